"""The tiny model of the end-to-end tests: a random-weight v1 generator (cnum 4 by default)."""
TINY_SEED = 3


def tiny_generator(seed=TINY_SEED, cnum=4):
  """(generator, ModelConfig); seeded here, so its weights do not depend on what earlier tests
  left in the process's global random state."""
  import keras

  from model import config as config_lib
  from model import generator as generator_lib
  cfg = config_lib.preset("v1", cnum=cnum)
  keras.utils.set_random_seed(seed)
  return generator_lib.build_generator(cfg), cfg


def write_tiny_checkpoint(directory, seed=TINY_SEED, inference=None):
  """Saves the tiny generator as our checkpoint format (``inference``: model.json's
  InferenceConfig, or none); returns the directory."""
  from model import weights
  gen, cfg = tiny_generator(seed)
  weights.save_generator(gen, cfg, str(directory), inference)
  return str(directory)
