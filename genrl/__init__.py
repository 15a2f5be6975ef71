"""genrl: reinforcement-learning fine-tuning of diffusion and flow generative models.

Convention (everywhere in genrl and samplers): t = sigma in [0, 1], t = 1 is pure noise, t = 0 is data,
x_t = (1 - t) x0 + t eps, velocity v = eps - x0. Adapters convert at the model boundary.
"""

__version__ = "0.1.0"
