"""The character-level tokenizer of the ``tiny`` model, built offline with ``tokenizers``."""

from __future__ import annotations

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

PAD, EOS, MASK = "<pad>", "<eos>", "<mask>"
CHARACTERS = "0123456789+-*=,;: "


def build_char_tokenizer(characters: str = CHARACTERS) -> PreTrainedTokenizerFast:
    vocab = {token: i for i, token in enumerate([PAD, EOS, MASK, *characters])}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token=PAD))
    # One token per character: split on every character and keep it.
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tokenizer.decoder = decoders.Fuse()  # characters join with no separator
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token=PAD,
        eos_token=EOS,
        mask_token=MASK,
        clean_up_tokenization_spaces=False,
    )
