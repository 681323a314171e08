"""The batch graph of EAN (Eqs. 3-6) against hand-computed values on a 4-image batch, the relaxation's
limit, and the GCN normalisation against the explicit D~^-1/2 (A + I) D~^-1/2."""

import math

import pytest
import torch

from ferlib.errors import FerlibError
from ferlib.nn.graph import (GCN, GraphConvolution, adjacency_loss, cosine_similarity_matrix, hard_adjacency,
                             label_mask, normalized_adjacency, soft_adjacency)

pytestmark = pytest.mark.usefixtures("one_thread")

# four features whose cosines are known by hand: 0/45/90/180 degrees apart
F4 = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0], [-3.0, 0.0]])
R = 1 / math.sqrt(2)
C4 = torch.tensor([[1, R, 0, -1], [R, 1, R, -R], [0, R, 1, 0], [-1, -R, 0, 1]])
LABELS = torch.tensor([0, 0, 1, 1])


def test_eq3_cosine_similarity_by_hand():
    assert torch.allclose(cosine_similarity_matrix(F4), C4, atol=1e-6)


def test_eq4_two_thresholds_and_single_tau_by_hand():
    two = hard_adjacency(C4, tau1=0.5, tau2=-0.5)
    assert two.tolist() == [[1, 1, 0, 1], [1, 1, 1, 1], [0, 1, 1, 0], [1, 1, 0, 1]]
    one = hard_adjacency(C4, tau1=0.5)
    assert one.tolist() == [[1, 1, 0, 0], [1, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 1]]
    with pytest.raises(FerlibError, match="tau2 < tau1"):
        hard_adjacency(C4, tau1=0.1, tau2=0.5)


def test_eq5_label_mask_by_hand():
    assert label_mask(LABELS).tolist() == [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]]


def test_eq6_adjacency_loss_by_hand():
    a = hard_adjacency(C4, tau1=0.5, tau2=-0.5)
    mask = label_mask(LABELS)
    # same-label pairs: 8; linked among them: (0,0) (0,1) (1,0) (1,1) (2,2) (3,3) = 6
    assert adjacency_loss(a, mask, alpha=0.1).item() == pytest.approx(0.1 * (6 - 8) ** 2)
    assert adjacency_loss(a, mask, alpha=0.1, normalise=True).item() == pytest.approx(0.1 * (2 / 8) ** 2)
    assert adjacency_loss(torch.ones(4, 4), mask).item() == 0.0     # every same-label pair linked


def test_the_relaxation_tends_to_the_hard_adjacency():
    similarity = cosine_similarity_matrix(torch.randn(12, 5, generator=torch.Generator().manual_seed(0)))
    hard = hard_adjacency(similarity, 0.3, -0.2)
    away = ((similarity - 0.3).abs() > 1e-3) & ((similarity + 0.2).abs() > 1e-3)
    gaps = [(soft_adjacency(similarity, 0.3, -0.2, t) - hard)[away].abs().max().item() for t in (0.1, 0.01, 1e-4)]
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 1e-6
    assert (soft_adjacency(similarity, 0.3, None, 1e-4) - hard_adjacency(similarity, 0.3))[away].abs().max() < 1e-6


def test_only_the_relaxation_passes_a_gradient_to_the_features():
    features = torch.randn(6, 4, generator=torch.Generator().manual_seed(1), requires_grad=True)
    mask = label_mask(torch.tensor([0, 0, 1, 1, 2, 2]))
    adjacency_loss(soft_adjacency(cosine_similarity_matrix(features), 0.5, 0.0, 0.1), mask).backward()
    assert features.grad is not None and features.grad.abs().sum() > 0
    hard = hard_adjacency(cosine_similarity_matrix(features), 0.5, 0.0)
    assert not hard.requires_grad      # Eq. 6 through the hard A trains nothing


def test_gcn_normalisation_equals_the_explicit_matrices():
    a = (torch.rand(7, 7, generator=torch.Generator().manual_seed(2)) > 0.5).float()
    a = ((a + a.t()) > 0).float()
    a_tilde = a + torch.eye(7)
    d = torch.diag(a_tilde.sum(1) ** -0.5)
    assert torch.allclose(normalized_adjacency(a), d @ a_tilde @ d, atol=1e-6)


def test_eq8_graph_convolution_and_the_identity_graph():
    layer = GraphConvolution(3, 2)
    x, a = torch.randn(5, 3), (torch.rand(5, 5) > 0.5).float()
    assert torch.allclose(layer(x, a), normalized_adjacency(a) @ (x @ layer.linear.weight.t() + layer.linear.bias),
                          atol=1e-6)
    # A = I: D~^-1/2 (2I) D~^-1/2 = I, each node alone
    assert torch.allclose(layer(x, torch.eye(5)), layer.linear(x), atol=1e-6)
    gcn = GCN((3, 8, 4))
    assert gcn(x, a).shape == (5, 4) and len(gcn.layers) == 2
    with pytest.raises(FerlibError):
        normalized_adjacency(torch.ones(3, 4))


def test_the_printed_eq6_grows_with_the_batch_and_the_normalised_one_does_not():
    # half of the same-label pairs unlinked, at batch sizes 16, 64 and 128 with 4 classes
    values = {}
    for n in (16, 64, 128):
        labels = torch.arange(n) % 4
        mask = label_mask(labels)
        a = mask * (torch.rand(n, n, generator=torch.Generator().manual_seed(n)) < 0.5).float()
        share = 1 - (mask * a).sum() / mask.sum()
        values[n] = (adjacency_loss(a, mask, 0.1).item(), adjacency_loss(a, mask, 0.1, normalise=True).item(),
                     0.1 * share.item() ** 2)
    assert values[16][0] < values[64][0] < values[128][0] and values[128][0] > 1000 * values[16][1]
    assert all(abs(v[1] - v[2]) < 1e-6 for v in values.values())   # alpha x (share of unlinked pairs)^2
