"""Our WordPiece tokenizer against transformers' reference BertTokenizer (pure Python)."""

import pytest
import transformers

from models.tokenizer import WordPieceTokenizer

SINGLES = [
    "it 's a charming and often affecting journey . ",
    "Naïve café owners in Zürich sold 1,234.50 crêpes — for $3!",
    "THE QUICK brown fox's \"jumps\" over 12 lazy dogs... (really?)",
    "supercalifragilisticexpialidocious xqzvbnmwrt antidisestablishmentarianism",
    "日本語のテキストと emoji 🙂 mixed",
    "",
]
PAIRS = [
    ("He said the foodservice pie business doesn't fit the company's long-term growth strategy.",
     "\"The foodservice pie business does not fit our long-term growth strategy."),
    ("What came into force after the new constitution was herald?",
     "As of that day, the new constitution heralding the Second Republic came into force."),
]


@pytest.fixture(scope="module")
def tokenizers(minilm_dir):
  return (WordPieceTokenizer.from_pretrained(minilm_dir),
          transformers.BertTokenizer.from_pretrained(str(minilm_dir)))


@pytest.mark.parametrize("text", SINGLES)
def test_single_sentences_match_reference(tokenizers, text):
  ours, ref = tokenizers
  expected = ref(text)
  assert ours.encode(text) == (expected["input_ids"], expected["token_type_ids"])


@pytest.mark.parametrize("max_length", [128, 24, 11])
@pytest.mark.parametrize("pair", PAIRS)
def test_pairs_and_truncation_match_reference(tokenizers, pair, max_length):
  ours, ref = tokenizers
  expected = ref(*pair, truncation="longest_first", max_length=max_length)
  assert ours.encode(*pair, max_length=max_length) == (expected["input_ids"],
                                                       expected["token_type_ids"])


def test_unknown_words_and_special_tokens(tokenizers):
  ours, _ = tokenizers
  ids, _ = ours.encode("∰")
  assert ids[0] == 101 and ids[-1] == 102 and 100 in ids  # [CLS] ... [UNK] ... [SEP]
  assert ours.pad_id == 0 and ours.vocab_size == 30522


def test_batch_equals_one_by_one(tokenizers):
  ours, _ = tokenizers
  firsts, seconds = zip(*PAIRS)
  assert ours.encode_batch(firsts, seconds, 32) == [ours.encode(a, b, 32) for a, b in PAIRS]
  with pytest.raises(ValueError, match="2 first sentences but 1 second"):
    ours.encode_batch(firsts, seconds[:1], 32)


def test_missing_vocabulary_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="vocab.txt does not exist"):
    WordPieceTokenizer.from_pretrained(tmp_path)


def test_save_pretrained_keeps_vocabulary_and_casing(tokenizers, tmp_path):
  ours, _ = tokenizers
  ours.save_pretrained(tmp_path)
  again = WordPieceTokenizer.from_pretrained(tmp_path)
  assert again.options == ours.options
  assert again.encode(*PAIRS[0]) == ours.encode(*PAIRS[0])
  cased = WordPieceTokenizer(tmp_path / "vocab.txt", lowercase=False)
  cased.save_pretrained(tmp_path / "cased")
  assert WordPieceTokenizer.from_pretrained(tmp_path / "cased").options["do_lower_case"] is False
