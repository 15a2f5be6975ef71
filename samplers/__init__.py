"""samplers: pure flow-matching math (schedules, ODE/SDE steps with exact
log-probs, guidance, masked discrete diffusion for diffusion LMs).

Time convention everywhere: t = sigma in [0, 1], t = 1 is pure noise, t = 0 is data,
x_t = (1 - t) x0 + t eps, velocity v = eps - x0. Log-probs are per-element MEANS over non-batch dims (shape [B])
unless reduce="sum" is asked for. SDE math runs in float32. Imports nothing from genrl or rewards.

    import samplers
    sig = samplers.flow_sigmas(10, shift=3.0)                       # SD3 / SD3.5 grid
    out = samplers.sample(lambda x, s: model(x, s), noise, sig, method="flow_grpo", noise_level=0.7,
                          record="trajectory", generator=torch.Generator().manual_seed(0))
    out.samples, out.latents, out.log_probs
"""

from .guidance import cfg, rlg
from .masked import REMASKING, MaskedDiffusionResult, masked_diffusion_sample, num_transfer_tokens
from .ode import dpm2_step, euler_step, heun, heun_step
from .sa_solver import sa_solver_grid, sa_solver_sample
from .sample import METHODS, ODE_METHODS, STOCHASTIC_METHODS, SampleResult, sample, sde_window_mask
from .schedules import check_sigmas, flow_sigmas, flux_mu
from .sde import SDE_KINDS, SDEStep, sde_log_prob, sde_mean_std, sde_step

__all__ = [
    "METHODS",
    "REMASKING",
    "MaskedDiffusionResult",
    "masked_diffusion_sample",
    "num_transfer_tokens",
    "ODE_METHODS",
    "SDE_KINDS",
    "STOCHASTIC_METHODS",
    "SDEStep",
    "SampleResult",
    "cfg",
    "check_sigmas",
    "dpm2_step",
    "euler_step",
    "flow_sigmas",
    "flux_mu",
    "heun",
    "heun_step",
    "rlg",
    "sa_solver_grid",
    "sa_solver_sample",
    "sample",
    "sde_log_prob",
    "sde_mean_std",
    "sde_step",
    "sde_window_mask",
]
