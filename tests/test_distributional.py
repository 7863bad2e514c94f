"""C51 projection (Bellemare et al. 2017): `project_distribution` against hand computations and a brute-force loop."""

import pytest
import torch

from plastic.agents.distributional import project_distribution, support


def brute_force_projection(probs, rewards, discounts, atoms):
    """Algorithm 1 of Bellemare et al. (2017), one sample and one source atom at a time."""
    v_min, v_max = float(atoms[0]), float(atoms[-1])
    num_atoms = atoms.numel()
    delta = (v_max - v_min) / (num_atoms - 1)
    out = torch.zeros(probs.shape, dtype=torch.float64)
    for b in range(probs.shape[0]):
        for j in range(num_atoms):
            tz = min(max(float(rewards[b]) + float(discounts[b]) * float(atoms[j]), v_min), v_max)
            position = (tz - v_min) / delta
            lower, upper = int(position // 1), int(-(-position // 1))
            if lower == upper:
                out[b, lower] += float(probs[b, j])
            else:
                out[b, lower] += float(probs[b, j]) * (upper - position)
                out[b, upper] += float(probs[b, j]) * (position - lower)
    return out


def test_support_is_evenly_spaced():
    assert support(-10.0, 10.0, 51).tolist() == pytest.approx([-10.0 + 0.4 * i for i in range(51)], abs=1e-5)


def test_reward_shift_by_a_fraction_of_an_atom_splits_mass_between_neighbours():
    atoms = support(-2.0, 2.0, 5)  # -2 -1 0 1 2, spacing 1
    probs = torch.tensor([[0.0, 0.0, 1.0, 0.0, 0.0]])  # all mass at 0
    projected = project_distribution(probs, torch.tensor([0.25]), torch.tensor([1.0]), atoms)
    # 0 + 0.25 lies a quarter of the way from atom 0 to atom 1: 0.75 stays, 0.25 moves up.
    assert projected.tolist()[0] == pytest.approx([0.0, 0.0, 0.75, 0.25, 0.0])


def test_reward_and_discount_by_hand():
    atoms = support(-2.0, 2.0, 5)
    probs = torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.0]])
    # r + 0.5 z = 0.5 + 0.5 * (-2, -1, 0, 1, 2) = (-0.5, 0, 0.5, 1, 1.5)
    # -0.5 -> half to -1, half to 0; 0 -> 0; 0.5 -> half to 0, half to 1; 1 -> 1; 1.5 -> nothing (p = 0)
    expected = [0.0, 0.05, 0.05 + 0.2 + 0.15, 0.15 + 0.4, 0.0]
    projected = project_distribution(probs, torch.tensor([0.5]), torch.tensor([0.5]), atoms)
    assert projected.tolist()[0] == pytest.approx(expected)


def test_zero_discount_puts_all_mass_at_the_clipped_reward():
    atoms = support(-10.0, 10.0, 51)
    probs = torch.softmax(torch.randn(3, 51, generator=torch.Generator().manual_seed(0)), dim=-1)
    rewards = torch.tensor([2.0, 25.0, -30.0])
    projected = project_distribution(probs, rewards, torch.zeros(3), atoms)
    expected = torch.zeros(3, 51)
    expected[0, 30] = 1.0  # 2.0 = -10 + 30 * 0.4
    expected[1, 50] = 1.0  # clipped to v_max
    expected[2, 0] = 1.0  # clipped to v_min
    torch.testing.assert_close(projected, expected)


def test_clipping_at_the_support_ends():
    atoms = support(-2.0, 2.0, 5)
    probs = torch.full((1, 5), 0.2)
    # r = 1, d = 1: targets (-1, 0, 1, 2, 3) -> 3 clips to 2, so atom 2 gets two fifths, atom -2 nothing.
    projected = project_distribution(probs, torch.tensor([1.0]), torch.tensor([1.0]), atoms)
    assert projected.tolist()[0] == pytest.approx([0.0, 0.2, 0.2, 0.2, 0.4])
    projected = project_distribution(probs, torch.tensor([-1.0]), torch.tensor([1.0]), atoms)
    assert projected.tolist()[0] == pytest.approx([0.4, 0.2, 0.2, 0.2, 0.0])


def test_matches_the_brute_force_loop_and_rows_sum_to_one():
    generator = torch.Generator().manual_seed(1)
    atoms = support(-10.0, 10.0, 51)
    batch = 64
    probs = torch.softmax(3 * torch.randn(batch, 51, generator=generator), dim=-1)
    rewards = 8 * torch.randn(batch, generator=generator)  # some beyond the support
    discounts = torch.rand(batch, generator=generator) * (torch.rand(batch, generator=generator) > 0.2)
    projected = project_distribution(probs, rewards, discounts, atoms)
    torch.testing.assert_close(projected.double(), brute_force_projection(probs, rewards, discounts, atoms),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(projected.sum(-1), torch.ones(batch), atol=1e-5, rtol=0)
    assert (projected >= 0).all()
