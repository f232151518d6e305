"""Training data: formats, schema errors with line numbers, dedup, split, fingerprint, masking, builders."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from foundation.errors import ArenaError
from training import builders
from training.config import JobConfig
from training.data import Example, dedup, fingerprint, load_file, mix, refuse_prompts, split
from training.tokenize import IGNORE, tokenize_chat, tokenize_text


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_every_format_normalizes(tmp_path):
    rows = [
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
        {"prompt": "p", "completion": "c"},
        {"instruction": "do it", "input": "x", "output": "done"},
        {"question": "q?", "answer": "a", "context": "ctx"},
        {"text": "raw words"},
        {"prompt": "p2", "chosen": "good", "rejected": "bad"},
        {"question": "alone?", "context": "ctx2"},
        {"prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]},
    ]
    ex = load_file(write_jsonl(tmp_path / "d.jsonl", rows))
    assert [e.kind for e in ex] == ["chat", "chat", "chat", "chat", "text", "pref", "prompt", "prompt"]
    assert ex[6].question().endswith("Question: alone?") and "ctx2" in ex[6].question()
    assert [m["role"] for m in ex[7].messages] == ["system", "user"]
    assert ex[2].messages[0]["content"] == "do it\n\nx"
    assert "ctx" in ex[3].messages[0]["content"] and ex[3].messages[-1]["content"] == "a"
    assert ex[5].chosen == "good" and ex[5].question() == "p2"


def test_json_and_csv(tmp_path):
    (tmp_path / "d.json").write_text(json.dumps([{"question": "a?", "answer": "b"}, {"text": "t"}], indent=1))
    assert [e.kind for e in load_file(tmp_path / "d.json")] == ["chat", "text"]
    (tmp_path / "d.csv").write_text("question,answer\nWhat?,That\nWho?,Them\n")
    assert [e.question() for e in load_file(tmp_path / "d.csv")] == ["What?", "Who?"]


def test_schema_errors_name_file_and_line(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"question": "q", "answer": "a"}, {"question": "q2", "answer": " "}])
    with pytest.raises(ArenaError, match=r"bad.jsonl line 2: field 'answer'"):
        load_file(path)
    # a question with no answer field is an rloo prompt; every other method refuses it, naming the line
    rows = load_file(write_jsonl(tmp_path / "q.jsonl", [{"question": "q", "answer": "a"}, {"question": "q2"}]))
    refuse_prompts(rows, "rloo")
    with pytest.raises(ArenaError, match=r"q.jsonl line 2: a question without an answer; method 'dpo'"):
        refuse_prompts(rows, "dpo")
    (tmp_path / "broken.jsonl").write_text('{"text": "ok"}\n\n{"text": \n')
    with pytest.raises(ArenaError, match=r"broken.jsonl line 3: invalid JSON"):
        load_file(tmp_path / "broken.jsonl")
    (tmp_path / "x.json").write_text('[\n {"text": "a"},\n {"foo": 1}\n]')
    with pytest.raises(ArenaError, match=r"x.json line 3 \(item 1\): unknown row format"):
        load_file(tmp_path / "x.json")
    (tmp_path / "c.csv").write_text("question,answer\nok?,fine\nmissing?,\n")  # an empty cell is no answer
    with pytest.raises(ArenaError, match=r"c.csv line 3: a question without an answer"):
        refuse_prompts(load_file(tmp_path / "c.csv"), "lora")
    with pytest.raises(ArenaError, match="no assistant turn"):
        write_jsonl(tmp_path / "m.jsonl", [{"messages": [{"role": "user", "content": "x"}]}])
        load_file(tmp_path / "m.jsonl")


def test_dedup_split_fingerprint_mix():
    rows = [Example("text", text=f"t{i % 10}", origin=str(i)) for i in range(20)]
    uniq = dedup(rows)
    assert len(uniq) == 10 and uniq[0].origin == "0"
    tr, va = split(uniq, 0.2, seed=1)
    assert len(va) == 2 and len(tr) == 8 and not {e.text for e in tr} & {e.text for e in va}
    assert split(uniq, 0.2, seed=1) == (tr, va) and split(uniq, 0.2, seed=2) != (tr, va)
    assert fingerprint(tr, va) == fingerprint(*split(uniq, 0.2, seed=1))
    assert fingerprint(tr, va) != fingerprint(va, tr)
    mixed = mix([(tr, 2.0), (va, 0.5)], seed=0)
    assert len(mixed) == 16 + 1


def test_prompt_tokens_are_masked(tiny_tokenizer):
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"},
            {"role": "assistant", "content": "Paris."}]
    row = tokenize_chat(tiny_tokenizer, msgs, max_length=512)
    trained = tiny_tokenizer.decode([t for t, lab in zip(row["input_ids"], row["labels"], strict=True)
                                     if lab != IGNORE])
    assert trained.startswith("Paris.") and "<|im_end|>" in trained
    assert "France" not in trained and "Be brief" not in trained
    assert tiny_tokenizer.decode(row["input_ids"]).startswith("<|im_start|>system")
    assert tokenize_chat(tiny_tokenizer, msgs, max_length=10) is None  # truncation left no answer


def test_raw_text_trains_on_all_tokens_in_windows(tiny_tokenizer):
    rows = tokenize_text(tiny_tokenizer, "x" * 250, max_length=100)
    assert [len(r["input_ids"]) for r in rows] == [100, 100, 51]
    assert all(r["labels"] == r["input_ids"] for r in rows)


def test_qa_and_cpt_from_sections():
    sections = [
        builders.SectionText("How do I reset the router?", "Hold the reset button for ten seconds until "
                             "the light blinks.", "faq.rst"),
        builders.SectionText("Overview", "A widget is a small device that counts sheep at night. "
                             "It is blue.", "manual.pdf"),
        builders.SectionText("How do I reset the router?", "Hold the reset button for ten seconds until "
                             "the light blinks.", "faq.rst"),
    ]
    qa = builders.qa_from_sections(sections)
    questions = [e.question() for e in qa]
    assert questions == ["How do I reset the router?", "What is a widget?"]
    assert "ten seconds" in qa[0].messages[-1]["content"]
    cpt = builders.cpt_from_sections(sections)
    assert len(cpt) == 2 and cpt[0].kind == "text" and cpt[0].text.startswith("How do I reset")


def test_preference_pairs_from_votes():
    votes = [SimpleNamespace(id=1, question="q", winner="rag", answers={"rag": "good", "base": "bad",
                                                                       "prompt": "good"})]
    pairs = builders.pref_from_votes(votes)
    assert [(p.chosen, p.rejected) for p in pairs] == [("good", "bad")]


def test_config_yaml_round_trip_and_errors(tmp_path):
    cfg = JobConfig(name="x", data=[{"path": "a.jsonl"}], lora_r=4, use_dora=True)
    cfg.to_yaml(tmp_path / "c.yaml")
    assert JobConfig.from_yaml(tmp_path / "c.yaml") == cfg
    (tmp_path / "bad.yaml").write_text("lora_r: many\n")
    with pytest.raises(ArenaError, match="bad.yaml: lora_r must be a valid integer.*got 'many'"):
        JobConfig.from_yaml(tmp_path / "bad.yaml")
    (tmp_path / "unk.yaml").write_text("lora_rank: 3\n")
    with pytest.raises(ArenaError, match="unknown setting lora_rank"):
        JobConfig.from_yaml(tmp_path / "unk.yaml")
    with pytest.raises(ArenaError, match="method must be 'lora', .* got 'magic'"):
        JobConfig(method="magic", data=[{"path": "a"}]).validate()
    with pytest.raises(ArenaError, match="lora_dropout must be less than 1, got 1.5"):
        JobConfig(lora_dropout=1.5, data=[{"path": "a"}]).validate()


def test_a_source_can_keep_all_its_rows_for_training(tmp_path):
    """A source with its own val_fraction (decide's document text: 0) is never held out; the others are."""
    from foundation.settings import Settings
    from training.config import JobConfig
    from training.sources import build_split

    knowledge = write_jsonl(tmp_path / "k.jsonl", [{"text": f"fact {i}"} for i in range(10)])
    qa = write_jsonl(tmp_path / "qa.jsonl", [{"question": f"q{i}?", "answer": f"a{i}"} for i in range(10)])
    cfg = JobConfig(data=[{"path": str(knowledge), "val_fraction": 0.0}, {"path": str(qa)}], val_fraction=0.3)
    train, val = build_split(cfg, Settings(data_dir=tmp_path / "data"))
    assert sorted(e.text for e in train if e.kind == "text") == sorted(f"fact {i}" for i in range(10))
    assert val and all(e.kind == "chat" for e in val)
    cfg.data[0]["val_fraction"] = 1.5
    with pytest.raises(ArenaError, match=r"k.jsonl: val_fraction must be in \[0, 1\), got 1.5"):
        build_split(cfg, Settings(data_dir=tmp_path / "data"))
