"""A tiny GPT-NeoX whose greedy output is known in advance, for testing the
OpenChatKit chat format on vLLM's CPU backend.

Attention and MLP outputs are zeroed, so each position's hidden state is its own token
embedding; the output matrix is set so that token t is followed by ``successor[t]``.
Head size is 64: vLLM's CPU attention rejects smaller heads.
"""

from __future__ import annotations

from pathlib import Path

SPEAKERS = ["<human>", "<bot>"]
# After the prompt's final ":" the model says " Sure thing" and a newline, then opens a
# new "<human>:" turn, which the stop string must cut off.
CHAIN = [":", "ĠSure", "Ġthing", "Ċ", "<human>", ":"]
CORPUS = [
    "<human>: Hello there, how are you?\n<bot>: Sure thing, I am fine.\n",
    "A helpful assistant answers questions. Sure thing! What is the weather like today?",
    "system prompt: be brief and kind. The quick brown fox jumps over the lazy dog.",
]


def build_tiny_gpt_neox(target: Path) -> Path:
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import AddedToken, GPTNeoXConfig, GPTNeoXForCausalLM, PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS * 20, vocab_size=320, min_frequency=1, special_tokens=["<|endoftext|>"])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", bos_token="<|endoftext|>")
    tokenizer.add_tokens([AddedToken(s, normalized=False, special=False) for s in SPEAKERS])
    vocab = tokenizer.get_vocab()
    missing = [t for t in CHAIN if t not in vocab]
    assert not missing, f"tokens missing from the tiny vocabulary: {missing}"

    config = GPTNeoXConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        num_attention_heads=2,
        num_hidden_layers=2,
        intermediate_size=256,
        max_position_embeddings=1024,
        rotary_pct=0.25,
        use_parallel_residual=True,
        tie_word_embeddings=False,
        eos_token_id=vocab["<|endoftext|>"],
        bos_token_id=vocab["<|endoftext|>"],
    )
    torch.manual_seed(0)
    model = GPTNeoXForCausalLM(config).eval()
    with torch.no_grad():
        for layer in model.gpt_neox.layers:
            layer.attention.dense.weight.zero_()
            layer.attention.dense.bias.zero_()
            layer.mlp.dense_4h_to_h.weight.zero_()
            layer.mlp.dense_4h_to_h.bias.zero_()
        embeddings = model.gpt_neox.embed_in.weight
        final_norm = model.gpt_neox.final_layer_norm
        final_norm.weight.fill_(1.0)
        final_norm.bias.zero_()
        normed = torch.nn.functional.layer_norm(embeddings, (config.hidden_size,), eps=config.layer_norm_eps)
        out = model.get_output_embeddings().weight
        out.normal_(0.0, 0.01)
        for current, following in zip(CHAIN, CHAIN[1:], strict=False):
            out[vocab[following]] = normed[vocab[current]] * 0.5
    model.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)
    return target
