"""Tiny local models for tests, examples and the demo: nothing is downloaded from a hub.

``build_tiny_llama`` trains a byte-level BPE tokenizer with ``tokenizers`` on given texts, gives it
a chat template (``TOOLS_CHAT_TEMPLATE``: one that also renders tools and tool calls in the
hermes format), and saves a small randomly initialised Llama with ``save_pretrained``. Training
it (``llmloop models init-base``) is the trainers' job, not this module's.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)
# The same turns, plus function tools (a system turn listing them), assistant tool calls and tool
# results in the hermes ``<tool_call>`` format, as Qwen's and Hermes' templates write them.
TOOLS_CHAT_TEMPLATE = """\
{%- if tools %}<|system|>You may call functions. Answer with <tool_call>\
{"name": ..., "arguments": {...}}</tool_call>.
<tools>{% for tool in tools %}{{ tool | tojson }}{% endfor %}</tools><|end|>{% endif %}
{%- for message in messages %}
{%- if message['role'] == 'assistant' and message['tool_calls'] is defined %}
<|assistant|>{{ message['content'] }}
{%- for call in message['tool_calls'] %}{% set args = call['function']['arguments'] %}
<tool_call>{"name": "{{ call['function']['name'] }}", "arguments": \
{{ args if args is string else args | tojson }}}</tool_call>
{%- endfor %}<|end|>
{%- elif message['role'] == 'tool' %}
<|tool|><tool_response name="{{ message['name'] or '' }}">\
{{ message['content'] }}</tool_response><|end|>
{%- else %}<|{{ message['role'] }}|>{{ message['content'] }}<|end|>{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|assistant|>{% endif %}"""
SPECIAL_TOKENS = [
    "<|pad|>",
    "<|bos|>",
    "<|end|>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|tool|>",
    "<|developer|>",
]
DEFAULT_TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello, how can I help you today?",
    "Your order has shipped and will arrive in three days.",
    "To reset your password, open settings and choose reset.",
    "Thank you for contacting support. We are happy to help.",
] * 20


def build_tiny_llama(
    out_dir: str | Path,
    texts: Iterable[str] | None = None,
    vocab_size: int = 512,
    hidden_size: int = 64,
    layers: int = 2,
    heads: int = 4,
    max_positions: int = 512,
    seed: int = 0,
    chat_template: str = CHAT_TEMPLATE,
) -> Path:
    """Save a tokenizer and a randomly initialised small Llama under ``out_dir``; return it."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    corpus = list(texts) if texts is not None else DEFAULT_TEXTS
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|bos|>",
        eos_token="<|end|>",
        pad_token="<|pad|>",
        unk_token=None,
    )
    fast.chat_template = chat_template
    fast.padding_side = "left"
    fast.save_pretrained(out)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 4,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_positions,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = fast.pad_token_id
    model.save_pretrained(out)
    return out


NER_NAMES = [
    "Alice Smith",
    "Bob Garcia",
    "Carmen Okafor",
    "Dmitri Novak",
    "Elena Tanaka",
    "Farid Schmidt",
    "Grace Rossi",
    "Hiro Kowalski",
    "Ines Haddad",
    "Jonas Silva",
]
_NER_TEMPLATES = [
    "My name is {n} and my order is late.",
    "Please ask {n} about the invoice.",
    "{n} called yesterday about the router.",
    "Dear {n}, your refund is approved.",
    "I spoke with {n} from support.",
    "Hello, this is {n}.",
    "The ticket was opened by {n} on Monday.",
    "Yesterday {n} wrote to us about it.",
    "Ask {n} to call me before Friday.",
    "Thanks {n}, nothing else here.",
    "Please forward this to {n} today.",
]
_NER_PLAIN = [
    "The Router broke on Monday.",
    "Paris office is closed.",
    "Please reset the Laptop settings.",
    "Support Team",
    "Your Refund is approved.",
    "Open Settings and choose Reset.",
    "Yesterday nothing else happened.",
    "Thanks, please call me.",
    "Ask the Team about it before Friday.",
]


def build_tiny_ner(out_dir: str | Path, names: list[str] | None = None, seed: int = 0) -> Path:
    """Train and save a tiny BERT token-classification model (labels O, B-PER, I-PER).

    It learns the given names (``NER_NAMES`` by default) in a few support-ticket sentences, in a
    few seconds on CPU: enough to exercise the real loading and span code of PII name detection
    (:mod:`llmloop.guards.pii_names`) offline, not a name detector for real text.
    """
    import random

    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertForTokenClassification, PreTrainedTokenizerFast

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    torch.manual_seed(seed)
    pool = names or NER_NAMES
    rows: list[tuple[str, str | None]] = [(t.format(n=n), n) for t in _NER_TEMPLATES for n in pool]
    rows += [(t, None) for t in _NER_PLAIN] * 4
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(
        [text for text, _ in rows],
        trainers.WordPieceTrainer(vocab_size=600, special_tokens=special),
    )
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    labels = ["O", "B-PER", "I-PER"]
    config = BertConfig(
        vocab_size=fast.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    model = BertForTokenClassification(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    model.train()
    for _ in range(12):
        rng.shuffle(rows)
        for start in range(0, len(rows), 16):
            batch = rows[start : start + 16]
            enc = fast(
                [t for t, _ in batch],
                padding=True,
                return_offsets_mapping=True,
                return_tensors="pt",
            )
            target = torch.full(enc["input_ids"].shape, -100)
            for i, (text, name) in enumerate(batch):
                begin = text.find(name) if name else -1
                end = begin + len(name) if name else -1
                inside_before = False
                for j, (a, b) in enumerate(enc["offset_mapping"][i].tolist()):
                    if a == b:
                        continue  # [CLS], [SEP], padding
                    inside = name is not None and a >= begin and b <= end
                    target[i, j] = (2 if inside_before else 1) if inside else 0
                    inside_before = inside
            enc.pop("offset_mapping")
            loss = model(**enc, labels=target).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    model.eval()
    model.save_pretrained(out)
    fast.save_pretrained(out)
    return out
