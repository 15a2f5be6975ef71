"""`geneval`: GenEval's compositional reward (objects, counts, colours, positions) with transformers models.

Pipeline per image (GenEval / Flow-GRPO reward server, ported from mmdet to transformers):
1. Instance segmentation with Mask2Former (COCO, default `facebook/mask2former-swin-small-coco-instance`; GenEval
   used mmdet's Swin-S LSJ checkpoint, so numbers are close but not bit-identical). Post-processing as in mmdet's
   Mask2Former: top-`num_queries` (query, class) pairs by class probability, mask = sigmoid(mask logits) > 0.5 at
   the original image size, score = class prob * mean mask prob inside the mask, box = the mask's extent.
2. Rules (rewards.geneval_rules): thresholds 0.3 / 0.9 (counting), at most 16 objects per class, position margin
   0.1, colour of each required object by CLIP zero-shot over GenEval's 10 colours on the masked crop (object
   composited over #999 grey, cropped to its box), 3 templates averaged.
3. Output: `scores` = the chosen verdict (`score="partial"` by default: Flow-GRPO's partial-credit reward;
   "strict": exact-count 0/1; "official": GenEval accuracy 0/1). `details` holds all three ("partial", "strict",
   "accuracy" as float tensors [N]), the tag and the reasons of failure.

Metadata per sample is required: GenEval's `evaluation_metadata.jsonl` rows,
`{"tag": ..., "include": [{"class", "count", "color"?, "position"?: [relation, group_index]}], "exclude": [...]}`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from PIL import Image

from rewards import geneval_rules as rules
from rewards._clip import load_pretrained
from rewards.base import Reward, RewardOutput, resolve_device, resolve_dtype
from rewards.registry import register

DEFAULT_DETECTOR = "facebook/mask2former-swin-small-coco-instance"
DEFAULT_CLIP = "openai/clip-vit-large-patch14"
SCORE_KINDS = ("partial", "strict", "official")


def _features(out) -> torch.Tensor:
    """CLIP get_*_features returns a tensor (transformers 4) or a ModelOutput with .pooler_output (5)."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


@register("geneval")
class GenEvalReward(Reward):
    name = "geneval"
    input_format = "pil"

    def __init__(
        self,
        model: str = DEFAULT_DETECTOR,
        clip_model: str = DEFAULT_CLIP,
        processor: str | None = None,
        clip_processor: str | None = None,
        score: str = "partial",
        threshold: float = rules.THRESHOLD,
        counting_threshold: float = rules.COUNTING_THRESHOLD,
        max_objects: int = rules.MAX_OBJECTS,
        position_margin: float = rules.POSITION_THRESHOLD,
        mask_threshold: float = 0.5,
        class_names: list[str] | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str | None = None,
        local_files_only: bool = False,
        batch_size: int = 8,
    ):
        from transformers import AutoImageProcessor, AutoModelForUniversalSegmentation, CLIPModel, CLIPProcessor

        if score not in SCORE_KINDS:
            raise ValueError(f"geneval: score={score!r} is not one of {SCORE_KINDS}")
        self.score_kind = score
        self.threshold, self.counting_threshold = float(threshold), float(counting_threshold)
        self.max_objects, self.margin, self.mask_threshold = int(max_objects), float(position_margin), mask_threshold
        self.batch_size = int(batch_size)
        self.device, self.dtype = resolve_device(device), resolve_dtype(dtype)
        lfo = local_files_only
        self.processor = load_pretrained(AutoImageProcessor, processor or model, "detector processor", lfo)
        self.detector = load_pretrained(AutoModelForUniversalSegmentation, model, "Mask2Former detector", lfo)
        self.detector.to(self.device, self.dtype).eval().requires_grad_(False)
        n_labels = self.detector.config.num_labels
        if class_names is None:
            id2label = self.detector.config.id2label
            class_names = list(rules.OBJECT_NAMES) if n_labels == 80 else [id2label[i] for i in range(n_labels)]
        if len(class_names) != n_labels:
            raise ValueError(f"geneval: {len(class_names)} class_names for a detector with {n_labels} classes")
        self.class_names = list(class_names)
        self.clip_processor = load_pretrained(CLIPProcessor, clip_processor or clip_model, "CLIP processor", lfo)
        self.clip = load_pretrained(CLIPModel, clip_model, "CLIP model", lfo)
        self.clip.to(self.device, self.dtype).eval().requires_grad_(False)
        self._text_cache: dict[str, torch.Tensor] = {}

    # ---- detector ----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def detect(self, images: list[Image.Image]) -> list[rules.Objects]:
        """Raw detections per image: {class name: [Detection(box, score, mask)]}, every candidate whose class
        probability exceeds the lowest threshold in use (rules.filter_detections applies the exact ones)."""
        inputs = self.processor(images=images, return_tensors="pt")
        pixel_values = inputs["pixel_values"].to(self.device, self.dtype)
        pixel_mask = inputs.get("pixel_mask")
        out = self.detector(pixel_values=pixel_values, pixel_mask=None if pixel_mask is None else pixel_mask.to(
            self.device))
        cls_logits, mask_logits = out.class_queries_logits.float(), out.masks_queries_logits.float()
        num_queries, num_classes = cls_logits.shape[1], cls_logits.shape[2] - 1
        hp, wp = pixel_values.shape[-2:]
        min_thr = min(self.threshold, self.counting_threshold)
        results = []
        for i, img in enumerate(images):
            probs = cls_logits[i].softmax(-1)[:, :-1]
            cls_scores, idx = probs.flatten().topk(num_queries)  # mmdet/HF: top num_queries (query, class) pairs
            keep = cls_scores > min_thr  # det score = cls prob * mask prob <= cls prob: nothing else can pass
            cls_scores, idx = cls_scores[keep], idx[keep]
            objects: rules.Objects = {}
            if idx.numel():
                q, labels = idx // num_classes, idx % num_classes
                # logits -> padded input size -> crop the valid (unpadded) area -> original size
                m = F.interpolate(mask_logits[i, q][None], size=(hp, wp), mode="bilinear", align_corners=False)[0]
                if pixel_mask is not None:
                    h_in, w_in = int(pixel_mask[i].any(1).sum()), int(pixel_mask[i].any(0).sum())
                    m = m[:, :h_in, :w_in]
                m = F.interpolate(m[None], size=(img.height, img.width), mode="bilinear", align_corners=False)[0]
                prob = m.sigmoid()
                binary = prob > self.mask_threshold
                mask_scores = (prob * binary).flatten(1).sum(1) / (binary.flatten(1).sum(1) + 1e-6)
                det_scores = (cls_scores * mask_scores).tolist()
                # box = the mask's extent [x1, y1, x2, y2) (mmdet's mask2bbox)
                cols, rows = binary.any(1), binary.any(2)  # [K, W], [K, H]
                w_, h_ = cols.shape[1], rows.shape[1]
                x1, y1 = cols.int().argmax(1), rows.int().argmax(1)
                x2, y2 = w_ - cols.flip(1).int().argmax(1), h_ - rows.flip(1).int().argmax(1)
                boxes = torch.stack([x1, y1, x2, y2], 1).tolist()
                nonempty = cols.any(1).tolist()
                masks = binary.cpu().numpy()
                for k in range(len(det_scores)):
                    if nonempty[k]:
                        det = rules.Detection(box=boxes[k], score=det_scores[k], mask=masks[k])
                        objects.setdefault(self.class_names[int(labels[k])], []).append(det)
            results.append(objects)
        return results

    # ---- colour classifier -------------------------------------------------------------------------------------
    @torch.no_grad()
    def _color_classifier(self, classname: str) -> torch.Tensor:
        if classname not in self._text_cache:
            weights = []
            for c in rules.COLORS:
                texts = [t.format(c=c, cls=classname) for t in rules.COLOR_TEMPLATES]
                tok = self.clip_processor.tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
                emb = _features(self.clip.get_text_features(**tok.to(self.device))).float()
                emb = F.normalize(emb, dim=-1).mean(0)
                weights.append(F.normalize(emb, dim=-1))
            self._text_cache[classname] = torch.stack(weights)  # [10, D]
        return self._text_cache[classname]

    @staticmethod
    def masked_crop(image: Image.Image, det: rules.Detection) -> Image.Image:
        """GenEval's ImageCrops: object pasted over #999 grey through its mask, cropped to its box."""
        if det.mask is not None:
            blank = Image.new("RGB", image.size, color="#999")
            image = Image.composite(image, blank, Image.fromarray(det.mask.astype("uint8") * 255))
        x1, y1, x2, y2 = (int(round(float(v))) for v in list(det.box)[:4])
        x2, y2 = max(x2, x1 + 1), max(y2, y1 + 1)
        return image.crop((x1, y1, x2, y2))

    @torch.no_grad()
    def classify_colors(self, image: Image.Image, classname: str, objects: list[rules.Detection]) -> list[str]:
        crops = [self.masked_crop(image, d) for d in objects]
        pix = self.clip_processor(images=crops, return_tensors="pt")["pixel_values"].to(self.device, self.dtype)
        emb = F.normalize(_features(self.clip.get_image_features(pixel_values=pix)).float(), dim=-1)
        pred = (emb @ self._color_classifier(classname).T).argmax(-1)
        return [rules.COLORS[int(k)] for k in pred]

    # ---- reward ------------------------------------------------------------------------------------------------
    def judge(self, image: Image.Image, raw: rules.Objects, meta: dict) -> rules.Verdict:
        return rules.judge(
            raw, meta, lambda cls, objs: self.classify_colors(image, cls, objs),
            self.threshold, self.counting_threshold, self.max_objects, self.margin,
        )

    def check_inputs(self, prompts, metadata=None) -> None:
        if metadata is None:
            raise ValueError(
                "geneval needs metadata per sample: GenEval rows like {'tag': 'counting', 'include': "
                "[{'class': 'cat', 'count': 2}], 'exclude': [{'class': 'cat', 'count': 3}]} (`genrl data geneval`)"
            )
        known = set(self.class_names)
        for m in metadata:
            rules.check_metadata(m)
            for req in list(m["include"]) + list(m.get("exclude", [])):
                if req["class"] not in known:
                    raise ValueError(f"geneval: class {req['class']!r} is not a detector class; use one of "
                                     f"{', '.join(self.class_names)}")

    def score(self, samples, prompts, metadata) -> RewardOutput:
        self.check_inputs(prompts, metadata)
        verdicts = [self.judge(img, raw, m) for img, raw, m in zip(samples, self.detect(samples), metadata)]
        partial = torch.tensor([v.score for v in verdicts], dtype=torch.float32)
        strict = torch.tensor([float(v.strict) for v in verdicts])
        official = torch.tensor([float(v.official) for v in verdicts])
        scores = {"partial": partial, "strict": strict, "official": official}[self.score_kind]
        details = {
            "partial": partial, "strict": strict, "accuracy": official,
            "tag": [m.get("tag", "") for m in metadata], "reasons": ["; ".join(v.reasons) for v in verdicts],
        }
        return RewardOutput(scores, details)
