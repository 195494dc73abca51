"""SearchSpace / Arch validation, JSON round trips and the probability convention."""

import dataclasses

import numpy as np
import pytest

from models.search_space import Arch, SearchSpace, get_space, one_hot_probs


@pytest.mark.parametrize("name", ["minilm", "bert_base", "tiny"])
def test_space_json_round_trip(name):
  space = get_space(name)
  assert SearchSpace.from_json(space.to_json()) == space


def test_default_spaces_end_at_base_models():
  minilm, base = get_space("minilm").largest_arch(), get_space("bert_base").largest_arch()
  assert (minilm.num_layers, minilm.hidden_size, minilm.heads[0], minilm.ffn[0]) == (
      6, 384, 12, 1536)
  assert get_space("minilm").head_size == 32 and get_space("bert_base").head_size == 64
  assert (base.num_layers, base.hidden_size, base.heads[0], base.ffn[0]) == (12, 768, 12, 3072)


@pytest.mark.parametrize("field,values,match", [
    ("hidden_choices", (256, 128), "sorted"),
    ("hidden_choices", (128, 128), "sorted"),
    ("ffn_choices", (0, 64), "positive"),
    ("head_choices", (), "empty"),
])
def test_bad_choices_raise(field, values, match):
  with pytest.raises(ValueError, match=match):
    dataclasses.replace(get_space("tiny"), **{field: values})


def test_unknown_space_and_keys_raise():
  with pytest.raises(ValueError, match="minilm"):
    get_space("nope")
  d = dataclasses.asdict(get_space("tiny"))
  d["bogus"] = 1
  with pytest.raises(ValueError, match="bogus"):
    SearchSpace.from_dict(d)


def test_arch_round_trip_and_save(tmp_path):
  arch = get_space("minilm").random_arch(np.random.default_rng(3))
  assert Arch.from_json(arch.to_json()) == arch
  arch.save(tmp_path / "arch.json")
  assert Arch.load(tmp_path / "arch.json") == arch


def test_random_archs_are_valid():
  space, rng = get_space("minilm"), np.random.default_rng(0)
  archs = [space.random_arch(rng) for _ in range(50)]
  for arch in archs:
    arch.validate(space)
  assert len({a.num_layers for a in archs}) > 1


def test_validate_names_field_and_allowed_values():
  space = get_space("tiny")
  with pytest.raises(ValueError, match=r"heads\[1\]=3.*\[1, 2\]"):
    Arch(2, 32, (1, 3), (64, 64)).validate(space)
  with pytest.raises(ValueError, match="hidden_size=48"):
    Arch(1, 48, (1,), (64,)).validate(space)
  with pytest.raises(ValueError, match="num_layers"):
    Arch(2, 32, (1,), (64,))


def test_malformed_arch_json_raises(tmp_path):
  (tmp_path / "a.json").write_text('{"num_layers": 2}')
  with pytest.raises(ValueError, match="a.json"):
    Arch.load(tmp_path / "a.json")


def test_one_hot_probs_shapes_and_selection():
  space = get_space("minilm")
  arch = Arch(3, 256, (2, 12, 6), (256, 1536, 768))
  probs = one_hot_probs(arch, space)
  assert probs["depth"].shape == (5,) and probs["hidden"].shape == (5,)
  assert probs["heads"].shape == (6, 6) and probs["ffn"].shape == (6, 6)
  for v in probs.values():
    np.testing.assert_allclose(v.sum(-1), 1.0)
  assert space.depth_choices[int(probs["depth"].argmax())] == 3
  assert [space.head_choices[i] for i in probs["heads"].argmax(-1)[:3]] == [2, 12, 6]
  assert [space.ffn_choices[i] for i in probs["ffn"].argmax(-1)[:3]] == [256, 1536, 768]
