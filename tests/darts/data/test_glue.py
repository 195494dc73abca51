"""Tests of darts.data.glue: TSV formats of every task, errors, hub-row conversion, source choice."""

import pathlib

import datasets
import pytest

from darts.data import glue


def _write(root: pathlib.Path, task_dir: str, file_name: str, text: str,
           encoding: str = "utf-8") -> pathlib.Path:
  path = root / task_dir / file_name
  path.parent.mkdir(parents=True, exist_ok=True)
  # newline="" so the exact bytes given (no trailing newline, "\r\n") reach the file.
  with open(path, "w", encoding=encoding, newline="") as f:
    f.write(text)
  return path


def test_registry_has_all_tasks_and_consistent_fields():
  assert set(glue.TASKS) == {
      "cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "mnli_mm", "qnli", "rte", "wnli"}
  for name, task in glue.TASKS.items():
    assert task.name == name
    assert len(task.text_columns) in (1, 2)
    assert len(task.hub_text_columns) == len(task.text_columns)
    assert task.splits == ("train", "dev")
    assert (task.label_names is None) == (task.tsv_label_values is None)
    if task.label_names is not None:
      assert len(task.label_names) == len(task.tsv_label_values)
    if task.has_header:
      assert len(task.header_names) == len(task.text_columns) + 1
  assert glue.get_task("stsb").is_regression and glue.get_task("stsb").num_labels == 1
  assert glue.get_task("mnli").num_labels == 3


def test_get_task_aliases_and_error_lists_names():
  assert glue.get_task("SST-2").name == "sst2"
  assert glue.get_task("mnli_mismatched").name == "mnli_mm"
  with pytest.raises(ValueError, match="Unknown GLUE task 'sst3'.*cola.*wnli"):
    glue.get_task("sst3")


def test_label_order_matches_hub_convention():
  assert glue.get_task("rte").label_names == ("entailment", "not_entailment")
  assert glue.get_task("qnli").label_names == ("entailment", "not_entailment")
  assert glue.get_task("mnli").label_names == ("entailment", "neutral", "contradiction")
  assert glue.get_task("wnli").label_names == ("not_entailment", "entailment")
  for name in ("sst2", "cola", "mrpc", "qqp", "wnli"):
    assert glue.get_task(name).tsv_label_values == ("0", "1")


def test_sst2(tmp_path):
  _write(tmp_path, "SST-2", "train.tsv",
         "sentence\tlabel\nhide new secretions from the parental units \t0\n"
         "it 's a \"charming\" journey . \t1\n")
  examples = glue.read_tsv_split("sst2", tmp_path, "train")
  assert examples == [
      glue.Example("hide new secretions from the parental units ", None, 0),
      glue.Example("it 's a \"charming\" journey . ", None, 1),
  ]


def test_mrpc_bom_header_and_raw_quotes(tmp_path):
  _write(tmp_path, "MRPC", "dev.tsv",
         "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
         "1\t1355540\t1355592\tHe said the pie business doesn't fit.\t"
         "\"The foodservice pie business does not fit our strategy.\n"
         "0\t2029631\t2029565\tMagnarelli said \"100 percent\" so.\tHis wife said \"no\".\n")
  examples = glue.read_tsv_split("mrpc", tmp_path, "dev")
  assert examples == [
      glue.Example("He said the pie business doesn't fit.",
                   "\"The foodservice pie business does not fit our strategy.", 1),
      glue.Example("Magnarelli said \"100 percent\" so.", "His wife said \"no\".", 0),
  ]


def test_cola_no_header_no_trailing_newline(tmp_path):
  _write(tmp_path, "CoLA", "dev.tsv",
         "gj04\t1\t\tThe sailors rode the breeze clear of the rocks.\n"
         "gj04\t0\t*\tThe more you eat, the more \"fat\" you.\n"
         "w_80\t1\t\tJohn talked to Bill about himself.")
  examples = glue.read_tsv_split("cola", tmp_path, "validation")
  assert [ex.label for ex in examples] == [1, 0, 1]
  assert examples[1].text_a == "The more you eat, the more \"fat\" you."
  assert examples[2] == glue.Example("John talked to Bill about himself.", None, 1)


def test_rte_qnli_wnli_labels(tmp_path):
  _write(tmp_path, "RTE", "train.tsv",
         "index\tsentence1\tsentence2\tlabel\n0\tA b.\tC d.\tnot_entailment\n"
         "1\tE f.\tG h.\tentailment\n")
  _write(tmp_path, "QNLI", "dev.tsv",
         "index\tquestion\tsentence\tlabel\n0\tWhat?\tThat.\tentailment\n"
         "1\tWho?\tNobody.\tnot_entailment\n")
  _write(tmp_path, "WNLI", "train.tsv",
         "index\tsentence1\tsentence2\tlabel\n0\tI a.\tI b.\t1\n1\tI c.\tI d.\t0\n")
  rte = glue.read_tsv_split("rte", tmp_path, "train")
  assert rte == [glue.Example("A b.", "C d.", 1), glue.Example("E f.", "G h.", 0)]
  qnli = glue.read_tsv_split("qnli", tmp_path, "dev")
  assert qnli == [glue.Example("What?", "That.", 0), glue.Example("Who?", "Nobody.", 1)]
  wnli = glue.read_tsv_split("wnli", tmp_path, "train")
  assert [ex.label for ex in wnli] == [1, 0]


def test_stsb_scores(tmp_path):
  header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
  _write(tmp_path, "STS-B", "dev.tsv",
         header + "\n0\tmain-captions\tMSRvid\t2012test\t0000\tnone\tnone\tA man.\tA guy.\t5.000\n"
         "1\tmain-news\theadlines\t2015\t0001\tnone\tnone\tX \"y\".\tZ.\t0.600\n")
  examples = glue.read_tsv_split("stsb", tmp_path, "dev")
  assert examples == [glue.Example("A man.", "A guy.", 5.0),
                      glue.Example("X \"y\".", "Z.", pytest.approx(0.6))]
  assert all(isinstance(ex.label, float) for ex in examples)


def test_qqp(tmp_path):
  _write(tmp_path, "QQP", "dev.tsv",
         "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\r\n"
         "201359\t303345\t303346\tWhy are \"X\" so?\tWhy is X?\t1\r\n")
  assert glue.read_tsv_split("qqp", tmp_path, "dev") == [
      glue.Example("Why are \"X\" so?", "Why is X?", 1)]


def _mnli_row(n_labels: int, gold: str) -> str:
  fields = ["7", "31193", "31193n", "government", "( ( bp ) )", "( ( hp ) )", "(ROOT bp)",
            "(ROOT hp)", "The premise.", "The hypothesis."]
  return "\t".join(fields + ["x"] * n_labels + [gold])


def test_mnli_matched_and_mismatched(tmp_path):
  base = ("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
          "sentence1_parse\tsentence2_parse\tsentence1\tsentence2")
  _write(tmp_path, "MNLI", "train.tsv",
         base + "\tlabel1\tgold_label\n" + _mnli_row(1, "neutral") + "\n")
  dev_header = base + "\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label\n"
  _write(tmp_path, "MNLI", "dev_matched.tsv",
         dev_header + _mnli_row(5, "contradiction") + "\n" + _mnli_row(5, "entailment") + "\n")
  _write(tmp_path, "MNLI", "dev_mismatched.tsv", dev_header + _mnli_row(5, "neutral") + "\n")
  assert glue.read_tsv_split("mnli", tmp_path, "train") == [
      glue.Example("The premise.", "The hypothesis.", 1)]
  assert [ex.label for ex in glue.read_tsv_split("mnli", tmp_path, "dev")] == [2, 0]
  assert [ex.label for ex in glue.read_tsv_split("mnli_mm", tmp_path, "dev")] == [1]


def test_stray_carriage_return_inside_text_does_not_split_row(tmp_path):
  _write(tmp_path, "SST-2", "train.tsv", "sentence\tlabel\na\rb\t1\n\n")
  assert glue.read_tsv_split("sst2", tmp_path, "train") == [glue.Example("a\rb", None, 1)]


@pytest.mark.parametrize("task_dir,task,text,line,problem", [
    ("SST-2", "sst2", "sentence\tlabel\ngood\t1\nbad\t0\textra\n", 3,
     "expected 2 tab-separated columns, found 3"),
    ("SST-2", "sst2", "sentence\tlabel\ngood\t1\nbad\tnegative\n", 3, "unknown label 'negative'"),
    ("RTE", "rte", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailed\n", 2,
     "unknown label 'entailed'"),
    ("CoLA", "cola", "gj04\t1\t\tok.\ngj04\t1\tmissing column\n", 2,
     "expected 4 tab-separated columns, found 3"),
])
def test_malformed_row_names_file_and_line(tmp_path, task_dir, task, text, line, problem):
  path = _write(tmp_path, task_dir, "train.tsv", text)
  with pytest.raises(ValueError) as info:
    glue.read_tsv_split(task, tmp_path, "train")
  message = str(info.value)
  assert f"{path}:{line}:" in message
  assert problem in message


def test_stsb_unparsable_score(tmp_path):
  header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
  path = _write(tmp_path, "STS-B", "train.tsv",
                header + "\n0\tg\tf\ty\t0\tn\tn\ta\tb\t3.5\n1\tg\tf\ty\t0\tn\tn\ta\tb\tfive\n")
  with pytest.raises(ValueError, match=f"{path}:3: .*unparsable similarity score 'five'"):
    glue.read_tsv_split("stsb", tmp_path, "train")


def test_skip_malformed(tmp_path):
  _write(tmp_path, "SST-2", "train.tsv", "sentence\tlabel\ngood\t1\nbroken\nbad\t0\n")
  examples = glue.read_tsv_split("sst2", tmp_path, "train", skip_malformed=True)
  assert [ex.text_a for ex in examples] == ["good", "bad"]


def test_a_byte_that_is_not_utf8_names_file_line_and_column(tmp_path):
  path = tmp_path / "SST-2" / "train.tsv"
  path.parent.mkdir()
  path.write_bytes(b"sentence\tlabel\na fine film\t1\nna\xefve charm\t1\n")
  with pytest.raises(ValueError, match=r"train.tsv:3: byte 0xef at column 3 is not UTF-8"):
    glue.read_tsv_split("sst2", tmp_path, "train")


def test_a_split_without_examples_is_named(tmp_path):
  path = _write(tmp_path, "SST-2", "train.tsv", "sentence\tlabel\n")
  with pytest.raises(ValueError, match=f"GLUE sst2/train has no examples: {path}"):
    glue.load_split("sst2", "train", tmp_path)


def test_wrong_header_is_rejected(tmp_path):
  # An unlabelled test.tsv put in place of dev.tsv.
  path = _write(tmp_path, "SST-2", "dev.tsv", "index\tsentence\n0\tgood\n")
  with pytest.raises(ValueError, match=f"{path}:1: unexpected header"):
    glue.read_tsv_split("sst2", tmp_path, "dev")


def test_missing_directory_and_file_errors(tmp_path):
  missing = tmp_path / "nope"
  with pytest.raises(FileNotFoundError, match="nope.*GLUE_DIR"):
    glue.read_tsv_split("sst2", missing, "train")
  with pytest.raises(FileNotFoundError) as info:
    glue.read_tsv_split("sst2", tmp_path, "train")
  assert str(tmp_path / "SST-2") in str(info.value)
  assert "--config.data.glue_dir" in str(info.value)
  _write(tmp_path, "SST-2", "train.tsv", "sentence\tlabel\n")
  with pytest.raises(FileNotFoundError, match="dev.tsv.*contains \\['train.tsv'\\]"):
    glue.read_tsv_split("sst2", tmp_path, "dev")


def test_unknown_split():
  with pytest.raises(ValueError, match="Unknown split 'test'.*train, dev"):
    glue.get_task("rte").split_file("test")


def test_hub_rows_from_dataset_with_class_label():
  features = datasets.Features({
      "sentence1": datasets.Value("string"),
      "sentence2": datasets.Value("string"),
      "label": datasets.ClassLabel(names=["entailment", "not_entailment"]),
      "idx": datasets.Value("int32"),
  })
  ds = datasets.Dataset.from_dict(
      {"sentence1": ["a", "b"], "sentence2": ["c", "d"], "label": [1, 0], "idx": [0, 1]},
      features=features)
  assert glue.examples_from_hub_rows("rte", ds) == [
      glue.Example("a", "c", 1), glue.Example("b", "d", 0)]


def test_hub_rows_single_sentence_and_regression():
  ds = datasets.Dataset.from_dict({"sentence": ["good"], "label": [1], "idx": [0]})
  assert glue.examples_from_hub_rows("sst2", ds) == [glue.Example("good", None, 1)]
  ds = datasets.Dataset.from_dict(
      {"sentence1": ["a"], "sentence2": ["b"], "label": [3.2], "idx": [0]})
  [example] = glue.examples_from_hub_rows("stsb", ds)
  assert example.label == pytest.approx(3.2) and isinstance(example.label, float)
  mnli = [{"premise": "p", "hypothesis": "h", "label": 2, "idx": 0}]
  assert glue.examples_from_hub_rows("mnli", mnli) == [glue.Example("p", "h", 2)]


def test_hub_rows_rejects_test_labels_and_bad_rows():
  ds = datasets.Dataset.from_dict({"sentence": ["x"], "label": [-1], "idx": [0]})
  with pytest.raises(ValueError, match="label -1: the labels of this split are hidden"):
    glue.examples_from_hub_rows("sst2", ds)
  with pytest.raises(ValueError, match="hidden"):
    glue.examples_from_hub_rows(
        "stsb", [{"sentence1": "a", "sentence2": "b", "label": -1.0}])
  with pytest.raises(ValueError, match="outside"):
    glue.examples_from_hub_rows("rte", [{"sentence1": "a", "sentence2": "b", "label": 2}])
  with pytest.raises(ValueError, match="no column 'sentence2'"):
    glue.examples_from_hub_rows("rte", [{"sentence1": "a", "label": 0}])


def test_hub_rows_reject_different_class_order():
  features = datasets.Features({
      "sentence1": datasets.Value("string"),
      "sentence2": datasets.Value("string"),
      "label": datasets.ClassLabel(names=["not_entailment", "entailment"]),
  })
  ds = datasets.Dataset.from_dict(
      {"sentence1": ["a"], "sentence2": ["b"], "label": [0]}, features=features)
  with pytest.raises(ValueError, match="differ from the label order"):
    glue.examples_from_hub_rows("rte", ds)


def test_load_split_prefers_glue_dir_then_env(tmp_path, monkeypatch):
  _write(tmp_path, "SST-2", "dev.tsv", "sentence\tlabel\ngood\t1\n")
  monkeypatch.delenv(glue.GLUE_DIR_ENV, raising=False)
  assert glue.load_split("sst2", "dev", tmp_path) == [glue.Example("good", None, 1)]
  monkeypatch.setenv(glue.GLUE_DIR_ENV, str(tmp_path))
  assert glue.load_split("sst2", "dev", "") == [glue.Example("good", None, 1)]


def test_load_split_hub_fallback_and_failure(monkeypatch):
  monkeypatch.delenv(glue.GLUE_DIR_ENV, raising=False)
  calls = []

  def fake_load_dataset(path, name, split):
    calls.append((path, name, split))
    return datasets.Dataset.from_dict(
        {"premise": ["p"], "hypothesis": ["h"], "label": [1], "idx": [0]})

  monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
  assert glue.load_split("mnli_mm", "dev") == [glue.Example("p", "h", 1)]
  assert calls == [("nyu-mll/glue", "mnli", "validation_mismatched")]

  def offline(*args, **kwargs):
    raise ConnectionError("no network")

  monkeypatch.setattr(datasets, "load_dataset", offline)
  with pytest.raises(RuntimeError, match="no network.*--config.data.glue_dir.*GLUE_DIR"):
    glue.load_split("sst2", "train")
