"""DeepFM and Temporal experts: the expert contract, the FM identity, the LTC recursion, masking, gradients,
and the Temporal dense variant's independence of column order."""

from __future__ import annotations

import itertools

import pytest
import torch

from finai_models.teacher.experts.base import SEQUENCE, SEQUENCE_MASK, ExpertInput, Field
from finai_models.teacher.experts.deepfm import DeepFM, dense_fields, fm_interaction
from finai_models.teacher.experts.temporal import FeatureTokenizer, LiquidTimeConstantCell, Temporal

WIDTH = 24
STEPS, SERIES = 6, 5


def _fields(sizes: list[int]) -> tuple[Field, ...]:
    bounds = list(itertools.accumulate(sizes, initial=0))
    return tuple(Field(f"g{i}", a, b) for i, (a, b) in enumerate(itertools.pairwise(bounds)))


def _deepfm(fields: tuple[Field, ...] = _fields([7, 3, 10]), dim: int = 20) -> DeepFM:
    return DeepFM(ExpertInput(dim, fields), WIDTH, k=4, hidden=(32, 16))


def _temporal(dim: int = 21, sequence: bool = True, max_tokens: int = 128) -> Temporal:
    spec = ExpertInput(dim, (), sequence_shape=(STEPS, SERIES) if sequence else None)
    return Temporal(spec, WIDTH, d_model=8, d_inner=16, d_state=4, dt_rank=2, ltc_units=6, heads=2, ff_dim=16,
                    max_tokens=max_tokens, flat_hidden=16, flat_dim=8)


def _side(batch: int, first_present: list[int] | None = None) -> dict[str, torch.Tensor]:
    """A random sequence; row i is present from month ``first_present[i]`` on (zeros before, as in the data)."""
    first = torch.tensor(first_present if first_present is not None else [0] * batch)
    mask = torch.arange(STEPS)[None, :] >= first[:, None]
    seq = torch.randn(batch, STEPS, SERIES) * mask[..., None]
    return {SEQUENCE: seq, SEQUENCE_MASK: mask}


def _cases() -> list[tuple[str, object]]:
    return [("deepfm", _deepfm), ("deepfm-dense", lambda: _deepfm((), 70)),
            ("temporal-seq", _temporal), ("temporal-dense", lambda: _temporal(sequence=False)),
            ("temporal-dense-mixed", lambda: _temporal(sequence=False, max_tokens=8))]


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c[0])
@pytest.mark.parametrize("batch", [1, 5])
def test_shapes_finite_fp32_and_bf16(case, batch):
    torch.manual_seed(0)
    name, build = case
    expert = build()
    x = torch.randn(batch, expert.spec.dim)
    side = _side(batch) if name == "temporal-seq" else {}
    for training in (True, False):
        expert.train(training)
        out = expert(x, side)
        assert out.shape == (batch, WIDTH) and out.dtype == torch.float32
        assert torch.isfinite(out).all() and out.abs().sum() > 0
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = expert(x, side)
        assert low.shape == (batch, WIDTH) and torch.isfinite(low.float()).all() and low.abs().sum() > 0


def test_fm_interaction_equals_pairwise_sum():
    torch.manual_seed(1)
    v = torch.randn(3, 5, 4, dtype=torch.float64)
    brute = sum(v[:, i] * v[:, j] for i, j in itertools.combinations(range(5), 2))
    torch.testing.assert_close(fm_interaction(v), brute)
    assert fm_interaction(v[:, :1]).abs().max() == 0     # one field has no pair


def test_deepfm_one_embedding_per_field():
    torch.manual_seed(2)
    fields = _fields([7, 3, 10])
    expert = _deepfm(fields)
    assert len(expert.embeddings) == len(fields) == len(expert.first_order)
    assert [e.in_features for e in expert.embeddings] == [f.dim for f in fields]
    fallback = _deepfm((), 70)                            # no fields: 32 + 32 + 6 columns
    assert [e.in_features for e in fallback.embeddings] == [32, 32, 6]
    assert dense_fields(70) == fallback.fields
    with pytest.raises(ValueError, match="tiling"):
        _deepfm(_fields([7, 3, 10])[::2])


def test_ltc_cell_two_steps_by_hand():
    torch.manual_seed(3)
    cell = LiquidTimeConstantCell(3, 2)
    b, A, tau_raw = torch.tensor([0.5, -1.0]), torch.tensor([2.0, -0.5]), torch.tensor([0.0, 1.0])
    with torch.no_grad():
        cell.input.weight.zero_()
        cell.recurrent.weight.zero_()
        cell.input.bias.copy_(b)
        cell.A.copy_(A)
        cell.tau_raw.copy_(tau_raw)
    f, tau, dt = torch.sigmoid(b), torch.log1p(torch.exp(tau_raw)) + 0.1, 0.5
    h = torch.zeros(2)
    for _ in range(2):
        h = (h + dt * f * A) / (1 + dt * (1 / tau + f))
    x = torch.randn(4, 3)
    out = cell.step(x, cell.step(x, torch.zeros(4, 2), dt), dt)
    torch.testing.assert_close(out, h.expand(4, 2))
    keep = torch.tensor([True, False, True, False])
    masked = cell.step(x, out, dt, keep)
    torch.testing.assert_close(masked[~keep], out[~keep], rtol=0, atol=0)
    assert not torch.allclose(masked[keep], out[keep])
    unrolled = cell(torch.randn(4, 3, 3), torch.tensor([[False, True, True]] * 4), dt)   # the first step skipped
    torch.testing.assert_close(unrolled, h.expand(4, 2))


def test_absent_months_do_not_matter_early_present_month_does():
    torch.manual_seed(4)
    expert = _temporal().eval()
    x, side = torch.randn(3, 21), _side(3, [2, 0, 4])
    base = expert(x, side)
    noise = 5 * torch.randn(3, STEPS, SERIES) * ~side[SEQUENCE_MASK][..., None]
    noisy = dict(side, **{SEQUENCE: side[SEQUENCE] + noise})
    torch.testing.assert_close(expert(x, noisy), base)
    early = side[SEQUENCE].clone()
    early[0, 2] += 1.0                                    # row 0's first present month
    changed = expert(x, dict(side, **{SEQUENCE: early}))
    assert (changed[0] - base[0]).abs().max() > 1e-4
    torch.testing.assert_close(changed[1:], base[1:])


@pytest.mark.parametrize("branch", ["mamba", "ltc", "transformer"])
def test_each_branch_reads_present_months_only(branch):
    torch.manual_seed(5)
    expert = _temporal().eval()
    h, mask = torch.randn(2, STEPS, 8), torch.tensor([[False, False, True, True, True, True]] * 2)
    pos = expert.seq_pos
    base = expert.branches(h, mask, pos)[branch]
    absent = h.clone()
    absent[:, :2] = torch.randn(2, 2, 8)
    torch.testing.assert_close(expert.branches(absent, mask, pos)[branch], base)
    present = h.clone()
    present[:, 2] += 1.0                                  # earliest present month, 3 steps before the readout
    assert (expert.branches(present, mask, pos)[branch] - base).abs().max() > 1e-5


def test_masked_attention_and_ltc_equal_the_present_months_alone():
    """A late joiner is encoded as if the sequence started at the first present month (same positions)."""
    torch.manual_seed(5)
    expert = _temporal().eval()
    h, mask = torch.randn(2, STEPS, 8), torch.tensor([[False, False, True, True, True, True]] * 2)
    out = expert.branches(h, mask, expert.seq_pos)
    alone = expert.transformer(h[:, 2:] + expert.seq_pos[2:]).mean(dim=1)
    torch.testing.assert_close(out["transformer"], alone)
    torch.testing.assert_close(out["ltc"], expert.ltc(h[:, 2:], mask[:, 2:]))


@pytest.mark.parametrize("sequence", [True, False], ids=["sequence", "dense"])
def test_every_parameter_gets_a_gradient(sequence):
    """Each variant builds only what it uses: no parameter is dead weight."""
    torch.manual_seed(6)
    expert = _temporal(sequence=sequence)
    side = _side(4, [0, 1, 3, 5]) if sequence else {}
    expert(torch.randn(4, 21), side).sum().backward()
    for name, param in expert.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all() and param.grad.abs().sum() > 0, name


def test_deepfm_every_parameter_gets_a_gradient():
    torch.manual_seed(7)
    expert = _deepfm()
    expert(torch.randn(4, 20), {}).sum().backward()
    for name, param in expert.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all() and param.grad.abs().sum() > 0, name


def test_all_absent_row_is_finite():
    torch.manual_seed(8)
    expert = _temporal()
    side = _side(2)
    side[SEQUENCE_MASK][1] = False
    for training in (True, False):
        out = expert.train(training)(torch.randn(2, 21), side)
        assert torch.isfinite(out).all()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(expert(torch.randn(2, 21), side).float()).all()


def test_each_variant_refuses_the_other_input():
    dense, sequential = _temporal(sequence=False), _temporal()
    with pytest.raises(ValueError, match="sequence_shape"):
        dense(torch.randn(2, 21), _side(2))
    with pytest.raises(ValueError, match="has none"):
        sequential(torch.randn(2, 21), {})


# ---------------------------------------------------------------- the dense variant reads a set of columns


def test_feature_tokens_by_hand():
    torch.manual_seed(10)
    tokenizer = FeatureTokenizer(5, 3)
    x = torch.randn(2, 5)
    tokens = tokenizer(x)
    assert tokens.shape == (2, 5, 3) and tokenizer.mix is None
    torch.testing.assert_close(tokens[1, 4], x[1, 4] * tokenizer.weight[4] + tokenizer.bias[4])
    wide = FeatureTokenizer(300, 3, max_tokens=16)        # wide tables: columns mixed into 16 tokens first
    assert wide.n_tokens == 16 and wide(torch.randn(2, 300)).shape == (2, 16, 3)
    assert wide.mix.weight.shape == (16, 300)


def test_dense_variant_has_no_order_machinery():
    """Adjacent columns are not a time series: no positional encoding, no Mamba, no LTC in the dense variant."""
    names = [n for n, _ in _temporal(sequence=False).named_parameters()]
    assert not [n for n in names if "pos" in n or n.startswith(("mamba", "ltc", "seq_proj"))], names
    assert any(n.startswith("tokenizer.") for n in names) and "cls" in names


@pytest.mark.parametrize("max_tokens", [128, 8], ids=["per-column", "mixed"])
def test_dense_output_does_not_depend_on_column_order(max_tokens):
    """Permuting the columns together with the weights that read them leaves the output unchanged."""
    torch.manual_seed(11)
    expert = _temporal(sequence=False, max_tokens=max_tokens).eval()
    x = torch.randn(5, 21)
    base = expert(x, {})
    perm = torch.randperm(21)
    with torch.no_grad():
        tok, first = expert.tokenizer, expert.flat[0]
        if tok.mix is None:
            tok.weight.copy_(tok.weight[perm])
            tok.bias.copy_(tok.bias[perm])
        else:
            tok.mix.weight.copy_(tok.mix.weight[:, perm])
        first.weight.copy_(first.weight[:, perm])
        torch.testing.assert_close(expert(x[:, perm], {}), base, rtol=1e-5, atol=1e-5)
