"""Config argument parsing and the config files themselves."""

import pytest

from configs import common, finetune


def test_parse_arg_casts_to_default_types():
  args = common.parse_arg("task=mrpc,runlocal,steps=7", task="sst2", runlocal=False, steps=0)
  assert (args.task, args.runlocal, args.steps) == ("mrpc", True, 7)
  assert common.parse_arg("runlocal=false", runlocal=True).runlocal is False
  assert common.parse_arg(None, task="sst2").task == "sst2"


@pytest.mark.parametrize("arg, message", [
    ("tsk=mrpc", "Unknown config argument 'tsk'"),
    ("steps=many", "is not a int"),
    ("steps", "needs a value"),
    ("runlocal=maybe", "takes true/false"),
])
def test_parse_arg_errors(arg, message):
  with pytest.raises(ValueError, match=message):
    common.parse_arg(arg, task="sst2", runlocal=False, steps=0)


def test_finetune_config_variants():
  full = finetune.get_config("task=rte")
  local = finetune.get_config("task=rte,runlocal")
  assert full.data.task == local.data.task == "rte"
  assert local.optim.num_train_steps > 0 and full.optim.num_train_steps == 0
  assert max(full.data.bucket_lengths) == full.data.max_length
