"""The VQ quantiser's numeric contracts, by brute force and by hand.

Nearest code against an independent loop over the codebook, the straight-through
gradient (exactly ones with commitment 0), the commitment loss and its gradient,
and the EMA codebook update worked out on a two-point example.
"""
from __future__ import annotations

import math

import pytest
import torch

from latentvla_ros.models.modeling_lam import EmaVectorQuantizer, codebook_stats, perplexity_from_counts


def _vq(codebook, decay=0.5, commitment=0.0, eps=0.0, **kw) -> EmaVectorQuantizer:
    codebook = torch.as_tensor(codebook, dtype=torch.float32)
    vq = EmaVectorQuantizer(codebook.shape[0], codebook.shape[1], decay=decay, commitment=commitment, eps=eps, **kw)
    vq.codebook.copy_(codebook)
    vq.ema_sum.copy_(codebook)
    vq.ema_count.fill_(1.0)
    vq.initialized.fill_(True)
    return vq


def test_nearest_code_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    codebook = torch.randn(16, 5, generator=g)
    z = torch.randn(60, 5, generator=g) * 1.5
    vq = _vq(codebook).eval()
    expected = []
    for row in z:  # independent reference: loop over codes, squared distance
        dists = [float(((row - c) ** 2).sum()) for c in codebook]
        expected.append(min(range(len(dists)), key=dists.__getitem__))
    assert vq.quantize(z).tolist() == expected
    out = vq(z)
    assert out.codes.tolist() == expected
    torch.testing.assert_close(out.quantized, codebook[expected])
    torch.testing.assert_close(vq.lookup(torch.tensor(expected)), codebook[expected])
    torch.testing.assert_close(out.latents, z)


def test_nearest_code_by_hand_not_largest_dot_product():
    # code 1 has the larger dot product with z = (1, 0) but code 0 is nearer: |(1,0)-(0.9,0)| < |(1,0)-(3,0)|;
    # 0 is 0.9 from code 0 and 1.0 from code 2; -0.2 is 1.1 from code 0 and 0.8 from code 2
    vq = _vq([[0.9, 0.0], [3.0, 0.0], [-1.0, 0.0]]).eval()
    assert vq.quantize(torch.tensor([[1.0, 0.0], [2.5, 0.0], [0.0, 0.0], [-0.2, 0.0], [-5.0, 1.0]])).tolist() == [0, 1, 0, 2, 2]


def test_straight_through_gradient_is_ones_with_commitment_zero():
    vq = _vq([[0.0, 0.0], [1.0, 1.0]]).eval()
    z = torch.tensor([[0.2, -0.1], [0.7, 0.9], [3.0, 2.0]], requires_grad=True)
    out = vq(z)
    torch.testing.assert_close(out.quantized.detach(), torch.tensor([[0.0, 0.0], [1.0, 1.0], [1.0, 1.0]]))
    (out.quantized.sum() + out.commitment_loss).backward()
    torch.testing.assert_close(z.grad, torch.ones_like(z))
    assert float(out.commitment_loss.detach()) == 0.0


def test_commitment_loss_and_gradient_by_hand():
    # z = (0.5, 0), code (0, 0): mse = 0.25 / 2 = 0.125, loss = 0.4 * 0.125 = 0.05;
    # d loss / d z = 0.4 * 2 (z - q) / 2 = (0.2, 0); the codebook gets no gradient (q is detached)
    vq = _vq([[0.0, 0.0], [5.0, 5.0]], commitment=0.4).eval()
    z = torch.tensor([[0.5, 0.0]], requires_grad=True)
    out = vq(z)
    assert float(out.commitment_loss) == pytest.approx(0.05)
    out.commitment_loss.backward()
    torch.testing.assert_close(z.grad, torch.tensor([[0.2, 0.0]]))


def test_ema_update_two_points_by_hand():
    # codes (0) and (10), counts 1 and 1, decay 0.5, eps 0. Batch z = 1 and 2: both nearest code 0.
    # batch counts (2, 0), sums (3, 0): ema_count = 0.5 (1, 1) + 0.5 (2, 0) = (1.5, 0.5)
    # ema_sum = 0.5 (0, 10) + 0.5 (3, 0) = (1.5, 5); codebook = ema_sum / ema_count = (1, 10)
    vq = _vq([[0.0], [10.0]], decay=0.5, eps=0.0).train()
    out = vq(torch.tensor([[1.0], [2.0]]))
    assert out.codes.tolist() == [0, 0]
    torch.testing.assert_close(vq.ema_count, torch.tensor([1.5, 0.5]))
    torch.testing.assert_close(vq.ema_sum, torch.tensor([[1.5], [5.0]]))
    torch.testing.assert_close(vq.codebook, torch.tensor([[1.0], [10.0]]))
    # the returned quantised latents are the codes before the update (0, 0) ... or after: pin what is used
    torch.testing.assert_close(out.quantized.detach(), vq.codebook[[0, 0]])
    assert float(out.perplexity) == pytest.approx(1.0)
    assert vq.usage_counts().tolist() == [2.0, 0.0]


def test_ema_update_laplace_smoothing_by_hand():
    # same step with eps 0.5: total 2, smoothed n_k = (n_k + 0.5) / (2 + 2 * 0.5) * 2 = (4/3, 2/3)
    # codebook = (1.5 / (4/3), 5 / (2/3)) = (1.125, 7.5)
    vq = _vq([[0.0], [10.0]], decay=0.5, eps=0.5).train()
    vq(torch.tensor([[1.0], [2.0]]))
    torch.testing.assert_close(vq.codebook, torch.tensor([[1.125], [7.5]]))


def test_ema_decay_weights_old_and_new():
    # decay 0.9: ema_count = 0.9 (1, 1) + 0.1 (1, 1) = (1, 1); ema_sum = 0.9 (0, 10) + 0.1 (2, 8) = (0.2, 9.8)
    vq = _vq([[0.0], [10.0]], decay=0.9, eps=0.0).train()
    out = vq(torch.tensor([[2.0], [8.0]]))
    assert out.codes.tolist() == [0, 1]
    torch.testing.assert_close(vq.ema_count, torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(vq.codebook, torch.tensor([[0.2], [9.8]]))
    assert float(out.perplexity) == pytest.approx(2.0)  # two codes used equally


def test_no_update_when_frozen_or_in_eval():
    for mode in ("eval", "frozen"):
        vq = _vq([[0.0], [10.0]])
        if mode == "eval":
            vq.eval()
        else:
            vq.train()
            vq.frozen = True
        vq(torch.tensor([[1.0], [2.0]]))
        torch.testing.assert_close(vq.codebook, torch.tensor([[0.0], [10.0]]))
        torch.testing.assert_close(vq.ema_count, torch.tensor([1.0, 1.0]))
    # frozen still counts usage in training mode, eval does not
    assert vq.usage_counts().tolist() == [2.0, 0.0]
    ev = _vq([[0.0], [10.0]]).eval()
    ev(torch.tensor([[1.0]]))
    assert ev.usage_counts().tolist() == [0.0, 0.0]


def test_usage_accumulates_and_resets():
    vq = _vq([[0.0], [10.0], [20.0]]).train()
    vq.frozen = True
    vq(torch.tensor([[1.0], [9.0]]))
    vq(torch.tensor([[11.0], [19.0], [21.0]]))
    assert vq.usage_counts().tolist() == [1.0, 2.0, 2.0]
    stats = codebook_stats(vq)
    assert stats["codes_used"] == 3.0 and stats["usage"] == 1.0
    assert stats["perplexity"] == pytest.approx(math.exp(-(0.2 * math.log(0.2) + 2 * 0.4 * math.log(0.4))))
    vq.reset_usage()
    assert vq.usage_counts().tolist() == [0.0, 0.0, 0.0]


def test_perplexity_from_counts_by_hand():
    # p = (1/4, 1/4, 1/2): entropy = 1.5 ln 2, perplexity = 2^1.5
    assert perplexity_from_counts(torch.tensor([1.0, 1.0, 2.0, 0.0])) == pytest.approx(2 ** 1.5)
    assert perplexity_from_counts(torch.tensor([0.0, 5.0])) == pytest.approx(1.0)
    assert perplexity_from_counts(torch.tensor([1.0, 0.0])) == pytest.approx(1.0)  # a single pick
    assert perplexity_from_counts(torch.zeros(4)) == 0.0


def test_first_training_batch_initialises_codes_from_data():
    torch.manual_seed(0)
    z = torch.arange(16, dtype=torch.float32).reshape(8, 2) * 3.0
    vq = EmaVectorQuantizer(4, 2, decay=1.0, commitment=0.0).train()  # decay 1: the EMA keeps the init
    assert not bool(vq.initialized)
    vq(z)
    assert bool(vq.initialized)
    # every code is (within the 1% noise) one of the batch rows, and no row is used twice
    dists = torch.cdist(vq.codebook, z)
    nearest = dists.argmin(dim=1)
    assert float(dists.min(dim=1).values.max()) < 0.5
    assert len(set(nearest.tolist())) == 4
    torch.testing.assert_close(vq.ema_count, torch.ones(4))


def test_dead_code_restart_only_restarts_unused_codes():
    torch.manual_seed(0)
    vq = _vq([[0.0, 0.0], [100.0, 100.0], [-100.0, -100.0]], decay=1.0).train()
    z = torch.tensor([[0.1, 0.0], [0.0, 0.1], [0.2, 0.2], [-0.1, 0.1]])
    vq(z)  # only code 0 used
    assert vq.restart_dead_codes(min_count=0) == 0  # disabled: usage still reset
    vq(z)
    before = vq.codebook.clone()
    assert vq.restart_dead_codes(min_count=1) == 2
    torch.testing.assert_close(vq.codebook[0], before[0])  # the used code is kept
    for k in (1, 2):  # restarted near a recent encoder output, with count 1
        assert float(torch.cdist(vq.codebook[k:k + 1], z).min()) < 0.05
        torch.testing.assert_close(vq.ema_sum[k], vq.codebook[k])
    torch.testing.assert_close(vq.ema_count[1:], torch.ones(2))
    assert vq.usage_counts().tolist() == [0.0, 0.0, 0.0]
    # min_count 5 with 4 uses of code 0: all three are dead now
    vq(z)
    assert vq.restart_dead_codes(min_count=5) == 3
    vq.frozen = True
    vq(z)
    assert vq.restart_dead_codes(min_count=5) == 0


def test_restart_without_any_training_forward_is_a_no_op():
    vq = _vq([[0.0], [1.0]])
    before = vq.codebook.clone()
    assert vq.restart_dead_codes(min_count=1) == 0
    torch.testing.assert_close(vq.codebook, before)


def test_constructor_defaults():
    # checkpoint and training contracts: a bool "initialized" buffer, small random codes, 2048 recent
    # latents for restarts, eps 1e-5, not frozen
    torch.manual_seed(0)
    vq = EmaVectorQuantizer(512, 16, decay=0.99, commitment=0.25)
    assert vq.initialized.dtype == torch.bool and not bool(vq.initialized)
    assert 0.09 < float(vq.codebook.std()) < 0.11
    torch.testing.assert_close(vq.ema_sum, vq.codebook)
    torch.testing.assert_close(vq.ema_count, torch.ones(512))
    assert vq.frozen is False and vq.buffer_size == 2048 and vq.eps == 1e-5 and vq.restart_noise == 0.01
    assert set(vq.state_dict()) == {"codebook", "ema_count", "ema_sum", "initialized"}


def test_default_eps_barely_changes_the_ema_update():
    # the two-point example with the default eps 1e-5: n_k = (n_k + 1e-5) / (2 + 2e-5) * 2
    codebook = torch.tensor([[0.0], [10.0]])
    vq = EmaVectorQuantizer(2, 1, decay=0.5, commitment=0.0)
    vq.codebook.copy_(codebook)
    vq.ema_sum.copy_(codebook)
    vq.initialized.fill_(True)
    vq.train()(torch.tensor([[1.0], [2.0]]))
    eps = 1e-5
    expected = [[1.5 / ((1.5 + eps) / (2 + 2 * eps) * 2)], [5.0 / ((0.5 + eps) / (2 + 2 * eps) * 2)]]
    torch.testing.assert_close(vq.codebook, torch.tensor(expected), atol=1e-6, rtol=1e-6)


def test_perplexity_of_a_single_sample_is_one():
    out = _vq([[0.0], [10.0]]).eval()(torch.tensor([[0.5]]))
    assert float(out.perplexity) == pytest.approx(1.0)


def _restarted_sources(vq, rows: torch.Tensor, rounds: int = 5) -> set[int]:
    """Indices of ``rows`` that codes restarted over several rounds came from (each within 5, the
    restart noise being 1% of the latents' spread of about 60)."""
    found = set()
    for _ in range(rounds):
        vq.reset_usage()  # no use counted: every code is dead for this restart
        vq.restart_dead_codes(min_count=1)
        d = torch.cdist(vq.codebook, rows)
        assert float(d.min(dim=1).values.max()) < 5.0, "a code restarted away from every recent latent"
        found |= set(d.argmin(dim=1).tolist())
    return found


def test_restart_draws_from_the_most_recent_latents_across_batches():
    # ring buffer of 3: batches (a, b) then (c, d) leave (b, c, d); a was overwritten, b survives the batch
    torch.manual_seed(0)
    rows = torch.tensor([[100.0, 0.0], [0.0, 100.0], [-100.0, 0.0], [0.0, -100.0]])  # a, b, c, d
    vq = _vq(torch.zeros(30, 2), decay=1.0, buffer_size=3).train()
    vq.frozen = False
    vq(rows[:2])
    vq(rows[2:])
    assert _restarted_sources(vq, rows) == {1, 2, 3}


def test_restart_pool_before_the_buffer_is_full_holds_only_real_latents():
    # 2 latents in a 5-slot buffer: restarted codes come from those two, never from empty slots (zeros)
    torch.manual_seed(1)
    rows = torch.tensor([[50.0, 50.0], [-50.0, 50.0]])
    vq = _vq(torch.zeros(20, 2), decay=1.0, buffer_size=5).train()
    vq(rows)
    assert _restarted_sources(vq, rows) == {0, 1}


def _ddp_worker(rank: int, init_file: str, out_dir: str) -> None:
    import json

    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        vq = _vq([[0.0], [10.0]], decay=0.5, eps=0.0).train()
        z = torch.tensor([[1.0]]) if rank == 0 else torch.tensor([[2.0], [9.0]])
        vq(z)
        result = (vq.codebook.flatten().tolist(), vq.ema_count.tolist(), vq.usage_counts().tolist())
        with open(f"{out_dir}/rank{rank}.json", "w") as f:
            json.dump(result, f)
    finally:
        dist.destroy_process_group()


def test_ema_update_and_usage_are_all_reduced_across_ranks(tmp_path):
    # two CPU ranks (gloo). Rank 0 sees z = 1, rank 1 sees z = 2 and 9: together counts (2, 1), sums (3, 9);
    # ema_count = 0.5 (1, 1) + 0.5 (2, 1) = (1.5, 1); ema_sum = 0.5 (0, 10) + 0.5 (3, 9) = (1.5, 9.5)
    # codebook (1, 9.5) on both ranks; usage summed over ranks (2, 1)
    import json

    import torch.multiprocessing as mp

    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("this torch build has no torch.distributed / gloo")
    # rank 1's batch alone (no process group): counts (1, 1), sums (2, 9) -> codebook (1, 9.5) as well but
    # ema_count (1, 1) and usage (1, 1); run here too so that the mutation tool links this test to forward()
    alone = _vq([[0.0], [10.0]], decay=0.5, eps=0.0).train()
    alone(torch.tensor([[2.0], [9.0]]))
    assert alone.ema_count.tolist() == [1.0, 1.0] and alone.usage_counts().tolist() == [1.0, 1.0]
    mp.start_processes(_ddp_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True,
                       start_method="fork")
    for rank in (0, 1):
        codebook, ema_count, usage = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert codebook == pytest.approx([1.0, 9.5]) and ema_count == pytest.approx([1.5, 1.0]), rank
        assert usage == [2.0, 1.0], rank


def test_window_restarts_revive_dead_codes_within_an_epoch_until_the_cut():
    # issue 13: the env codebook lost 5 of 16 codes during the last epoch, where the epoch-end restart is off;
    # restarts every few steps keep the codes alive, and stop before the end so the decoder learns them
    torch.manual_seed(0)
    vq = _vq([[0.0, 0.0], [100.0, 100.0], [-100.0, -100.0]], decay=1.0).train()
    z = torch.tensor([[0.1, 0.0], [0.0, 0.1], [0.2, 0.2], [-0.1, 0.1]])
    vq.schedule_window_restarts(every=2, min_count=1, until_step=2)
    vq(z)
    assert vq.window_restarted == 0  # mid-window: nothing yet
    vq(z)  # end of the first window: codes 1 and 2 unused
    assert vq.window_restarted == 2
    assert float(torch.cdist(vq.codebook[1:], z).min(dim=1).values.max()) < 0.05
    far = torch.tensor([[100.0, 100.0], [-100.0, -100.0]])
    vq.codebook[1:], vq.ema_sum[1:] = far, far
    vq(z), vq(z)  # past until_step: no more restarts
    assert vq.window_restarted == 2
    torch.testing.assert_close(vq.codebook[1:], far)
    vq.schedule_window_restarts(every=0, min_count=1, until_step=100)  # disabled
    vq(z), vq(z)
    assert vq.window_restarted == 2


def test_nearest_code_of_a_row_does_not_depend_on_the_rest_of_the_batch():
    # codes 0.002 apart near the origin; z = 0.0011 is nearer code 1 (0.0009 vs 0.0011). A far latent
    # (norm 1000) in the same batch must not change that: |z|^2 is a per-row term, and a batch-wide
    # constant of 1e6 would round the small row's distances (1e-6 apart) to a tie in float32
    vq = _vq([[0.0, 0.0], [0.002, 0.0]]).eval()
    small, far = torch.tensor([[0.0011, 0.0]]), torch.tensor([[1000.0, 0.0]])
    assert vq.quantize(small).tolist() == [1]
    assert vq.quantize(torch.cat([far, small])).tolist() == [1, 1]


def test_nearest_code_far_from_the_origin_matches_brute_force():
    # latents and codes offset by 1000 (codes 3 apart): float32 keeps the distances (|z|^2 ~ 1e6, ulp 0.06)
    # apart; a per-row constant of |z|^3 ~ 1e9 (ulp 64) would turn them all into ties
    codebook = torch.tensor([[1000.0, 0.0], [1000.0, 3.0]])
    z = torch.tensor([[1000.0, 2.0], [1000.0, -0.5], [1000.0, 1.0], [1000.0, 2.5]])
    expected = torch.cdist(z.double(), codebook.double()).argmin(dim=1).tolist()
    assert expected == [1, 0, 0, 1]
    assert _vq(codebook).eval().quantize(z).tolist() == expected


def test_recent_ring_buffer_wraps_at_exactly_its_size():
    vq = _vq([[0.0]], buffer_size=4)
    pushes = [[1, 2], [3, 4], [5], [6, 7, 8], [9, 10, 11], [12, 13], [20, 21, 22, 23, 24, 25]]
    # after each push: buffer, write position, rows filled (worked out by hand)
    expected = [([1, 2, 0, 0], 2, 2), ([1, 2, 3, 4], 0, 4),  # end == size: fills the last slots, back to 0
                ([5, 2, 3, 4], 1, 4), ([5, 6, 7, 8], 0, 4), ([9, 10, 11, 8], 3, 4),
                ([13, 10, 11, 12], 1, 4),  # end 5 > 4: one row at the end, one at the start
                ([25, 22, 23, 24], 1, 4)]  # more rows than slots: the newest 4, in ring order
    for rows, (buf, pos, filled) in zip(pushes, expected):
        vq._push_recent(torch.tensor(rows, dtype=torch.float32)[:, None])
        assert vq._recent[:, 0].tolist() == buf and vq._recent_pos == pos and vq._recent_filled == filled, rows


def test_recent_ring_buffer_lives_on_the_latents_device():
    # the meta device stands in for an accelerator here: the buffer is allocated where the latents are
    # and kept across pushes (a buffer made on the CPU could not take them)
    vq = _vq([[0.0, 0.0]], buffer_size=4)
    vq._push_recent(torch.zeros(3, 2, device="meta"))
    vq._push_recent(torch.zeros(2, 2, device="meta"))
    assert vq._recent.device.type == "meta" and tuple(vq._recent.shape) == (4, 2)
    assert vq._recent_pos == 1 and vq._recent_filled == 4


def _window_vq(every: int, min_count: int, until_step: int) -> tuple[EmaVectorQuantizer, torch.Tensor]:
    """4 codes far from a pool of 3 recent latents (0.5, 0.6, 0.7), window restarts scheduled; noise 1e-6."""
    vq = _vq([[100.0], [200.0], [300.0], [400.0]], restart_noise=0.0)
    vq._push_recent(torch.tensor([[0.5], [0.6], [0.7]]))
    vq.schedule_window_restarts(every=every, min_count=min_count, until_step=until_step)
    return vq, vq.codebook.clone()


def _window_updates(vq, original: torch.Tensor, counts: list[list[float]]) -> list[list[int]]:
    """Feed one codebook update per row of ``counts``; after each, the codes restarted by it (drawn from the
    pool) are listed and put back to their original values."""
    restarted = []
    for c in counts:
        vq._window_step(torch.tensor(c))
        moved = (vq.codebook[:, 0] != original[:, 0]).nonzero().flatten().tolist()
        for k in moved:
            assert min(abs(float(vq.codebook[k, 0]) - p) for p in (0.5, 0.6, 0.7)) < 1e-4, "not from the pool"
        vq.codebook.copy_(original)
        restarted.append(moved)
    return restarted


def test_window_restart_at_the_window_end_with_usage_summed_over_the_window():
    # windows of 3 updates, min 2 uses, up to update 6. Window 1 uses (1,0,0,5) + (0,1,0,0) + (1,0,1,0) =
    # (2,1,1,5): codes 1 and 2 restarted at update 3, not before. Window 2 starts from zero (window 1's use
    # of code 1 does not carry over): (0,0,0,3) + (2,0,0,0) + (0,1,0,0) = (2,1,0,3): codes 1, 2 at update 6
    # (== the cut, still restarted). Window 3 (updates 7-9) lies past the cut: nothing although all unused
    vq, original = _window_vq(every=3, min_count=2, until_step=6)
    counts = [[1, 0, 0, 5], [0, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 3], [2, 0, 0, 0], [0, 1, 0, 0],
              [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    restarted = _window_updates(vq, original, counts)
    assert restarted == [[], [], [1, 2], [], [], [1, 2], [], [], []]
    assert vq.window_restarted == 4  # accumulated over the windows
    assert vq._update_steps == 9


def test_window_of_one_update_restarts_after_every_update():
    vq, original = _window_vq(every=1, min_count=1, until_step=2)
    assert _window_updates(vq, original, [[0, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0]]) == [[0], [2, 3], []]
    assert vq.window_restarted == 3


def test_window_restarts_off_when_disabled_or_min_count_zero():
    for every, min_count in ((0, 5), (-1, 5), (2, 0)):
        vq, original = _window_vq(every=every, min_count=min_count, until_step=100)
        assert _window_updates(vq, original, [[0, 0, 0, 0]] * 4) == [[]] * 4, (every, min_count)
        assert vq.window_restarted == 0
    # a fresh quantizer (never scheduled) has them off
    vq = _vq([[100.0], [200.0]])
    vq._push_recent(torch.tensor([[0.5]]))
    before = vq.codebook.clone()
    for _ in range(3):
        vq._window_step(torch.zeros(2))
    torch.testing.assert_close(vq.codebook, before)
    assert vq.window_restarted == 0


def test_rescheduling_starts_a_new_window_and_step_count():
    # 2 updates into a window of 3 (codes 1-3 used twice), reschedule: the next window starts from zero and
    # lasts 3 updates, so codes 1 and 2, unused in it, are restarted at its end (update 3 == the new cut,
    # counted from the new call); the next window lies past the cut
    vq, original = _window_vq(every=3, min_count=1, until_step=100)
    assert _window_updates(vq, original, [[0, 1, 1, 1], [0, 1, 1, 1]]) == [[], []]
    vq.schedule_window_restarts(every=3, min_count=1, until_step=3)
    assert _window_updates(vq, original, [[1, 0, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0]]) == [[], [], [1, 2]]
    assert _window_updates(vq, original, [[0, 0, 0, 0]] * 3) == [[], [], []]
    assert vq.window_restarted == 2
