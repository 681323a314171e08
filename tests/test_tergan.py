"""TER-GAN: the networks' geometry, the gradient reversal layer, each loss by hand, and which parameters
each loss reaches."""

import copy

import pytest
import torch
from torch.nn import functional as F

from ferlib.engine import Precision
from ferlib.errors import FerlibError
from ferlib.models import tergan
from ferlib.models.tergan import (TERGAN, Encoder, RecognitionTask, StageOneTask, TERGANTask, consistency_loss,
                                  feature_loss, l1, padded_side, total_loss)
from ferlib.nn.gradient_reversal import GradientReversal, reverse_gradient

EXPRESSIONS, PEOPLE = 6, 5


def small(size=32, divisor=16):
    torch.manual_seed(0)
    return TERGAN(EXPRESSIONS, PEOPLE, 3, size, width_divisor=divisor)


def with_amp(task):
    task.amp = Precision(torch.device("cpu"), False)
    return task


def batch(n=4, size=32, seed=1):
    g = torch.Generator().manual_seed(seed)
    return {"image": torch.rand(n, 3, size, size, generator=g) * 2 - 1, "label": torch.arange(n) % EXPRESSIONS,
            "identity": torch.arange(n) % PEOPLE,
            "target": {"image": torch.rand(n, 3, size, size, generator=g) * 2 - 1,
                       "identity": (torch.arange(n) + 1) % PEOPLE}}


# ----------------------------------------------------------------------------- geometry

def test_paper_geometry_and_widths():
    model = TERGAN(6, 80, 3, 75)
    assert padded_side(75) == 96 and padded_side(64) == 64
    x = torch.zeros(2, 3, 75, 75)
    model.eval()
    f_e, maps = model.G_es(x, with_maps=True)
    assert f_e.shape == (2, 30) and model.G_et(x).shape == (2, 50)                     # f(e) 30-d, f(i) 50-d
    assert [m.shape[1] for m in maps] == [64, 128, 256, 512, 1024]                     # Sec. 4.1's widths
    assert [m.shape[-1] for m in maps] == [96, 48, 24, 12, 6]                          # 3x3 stride-1, then pooled
    assert all(b[0].kernel_size == (3, 3) and b[0].stride == (1, 1) for b in model.G_es.blocks)
    decoder_convs = [m for m in model.G_de.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in decoder_convs] == [512, 256, 128, 64, 3]
    assert all(c.kernel_size == (3, 3) and c.stride == (1, 1) for c in decoder_convs)
    assert model.G_de.fc.in_features == 80                                            # [f(e), f(i)] concatenated
    assert model.transfer(x, x).shape == (2, 3, 75, 75)                               # cropped back to 75
    e, i = model.D(x)
    assert e.shape == (2, 7) and i.shape == (2, 80)                                   # N^e + 1 and N^i outputs
    d_convs = [m for m in model.D.convs if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in d_convs] == [16, 32, 64, 128]
    linears = lambda seq: [m.out_features for m in seq if isinstance(m, torch.nn.Linear)]  # noqa: E731
    assert linears(model.D.shared) == [1024]
    assert linears(model.D.expression) == [512, 256, 7] and linears(model.D.identity) == [512, 256, 80]
    assert linears(model.D_es.net) == [32, 16, 1] and linears(model.D_et.net) == [32, 16, 1]


def test_the_encoder_counts_its_parameters_from_the_layer_widths():
    encoder = Encoder(3, 30, 75)
    convs = sum(c_in * c_out * 9 + 2 * c_out for c_in, c_out in zip((3, 64, 128, 256, 512), (64, 128, 256, 512, 1024)))
    assert sum(p.numel() for p in encoder.parameters()) == convs + 1024 * 3 * 3 * 30 + 30


def test_wrong_sizes_are_refused_clearly():
    with pytest.raises(FerlibError, match="at least 32 x 32"):
        TERGAN(6, 5, 3, 24)
    model = small()
    with pytest.raises(FerlibError, match="built for 32 x 32 px images; got 40 x 40"):
        model.G_es(torch.zeros(1, 3, 40, 40))


def test_padding_is_cropped_back_at_the_centre():
    geometry = tergan.Geometry(75)
    x = torch.arange(75 * 75, dtype=torch.float).view(1, 1, 75, 75)
    padded = geometry.pad(x)
    assert padded.shape[-1] == 96 and torch.equal(geometry.crop(padded), x)
    assert geometry.before == 10 and geometry.after == 11


# ----------------------------------------------------------------------------- gradient reversal

def test_gradient_reversal_is_the_identity_forward_and_minus_lambda_backward():
    x = torch.randn(3, 4, requires_grad=True)
    upstream = torch.randn(3, 4)
    y = GradientReversal(0.3)(x)
    assert torch.equal(y, x)
    y.backward(upstream)
    assert torch.allclose(x.grad, -0.3 * upstream)
    x.grad = None
    reverse_gradient(x, 2.0).backward(upstream)
    assert torch.allclose(x.grad, -2.0 * upstream)


def test_feature_discriminators_learn_to_separate_while_the_encoder_is_pushed_to_confuse():
    """D_es minimises Eq. 4; through the reversal layer the features move the other way (maximise it)."""
    torch.manual_seed(0)
    disc = tergan.FeatureDiscriminator(2)
    real = torch.randn(64, 2) + torch.tensor([2.0, 0.0])
    generated = (torch.randn(64, 2) - torch.tensor([2.0, 0.0])).requires_grad_(True)
    opt = torch.optim.Adam(disc.parameters(), lr=0.01)
    start = consistency_loss(disc(real), disc(generated)).item()
    for _ in range(200):
        opt.zero_grad()
        consistency_loss(disc(real), disc(generated)).backward()
        opt.step()
    assert consistency_loss(disc(real), disc(generated)).item() < 0.5 * start      # D separates them
    generated.grad = None
    loss = consistency_loss(disc(real), disc(generated))
    loss.backward()
    ascent = generated.detach() + 0.1 * (-generated.grad)        # a descent step on what the encoder receives
    # ... raises the discriminator's loss: the encoder is made to confuse D, as Eq. 4's min over G_es asks
    assert consistency_loss(disc(real), disc(ascent)).item() > loss.item()


# ----------------------------------------------------------------------------- losses by hand

def test_l1_and_the_feature_loss_by_hand():
    a, b = torch.tensor([[1.0, -2.0], [0.5, 0.0]]), torch.tensor([[0.0, 0.0], [0.5, 1.0]])
    assert l1(a, b).item() == pytest.approx((1 + 2 + 0 + 1) / 4)
    maps = [torch.full((1, 2), float(k)) for k in range(5)]
    zeros = [torch.zeros(1, 2) for _ in range(5)]
    assert feature_loss(maps, zeros).item() == pytest.approx(0.5 * 0 + 0.6 * 1 + 0.7 * 2 + 0.88 * 3 + 0.99 * 4)
    with pytest.raises(FerlibError, match="5 weights"):
        feature_loss(maps[:4], zeros[:4])


def test_consistency_loss_by_hand():
    real, generated = torch.tensor([0.0, 2.0]), torch.tensor([-1.0])
    sig = torch.sigmoid
    expected = -(torch.log(sig(torch.tensor(0.0))) + torch.log(sig(torch.tensor(2.0)))) / 2 - torch.log(1 - sig(torch.tensor(-1.0)))
    assert consistency_loss(real, generated).item() == pytest.approx(expected.item(), abs=1e-6)


def test_total_loss_weights_each_term_as_eq_10():
    names = ("if", "ef", "irec", "erec", "det", "des", "g")
    terms = {n: torch.tensor(float(2 ** k)) for k, n in enumerate(names)}
    expected = 1 * 1 + 1 * 2 + 1 * 4 + 1 * 8 + 0.3 * 16 + 0.3 * 32 + 0.5 * 64
    assert total_loss(terms).item() == pytest.approx(expected)


def test_discriminator_loss_gives_the_fake_class_to_the_generated_image():
    model = small()
    b = batch()
    generated = torch.rand_like(b["image"])
    e_source, _ = model.D(b["image"])
    _, i_target = model.D(b["target"]["image"])
    e_fake, _ = model.D(generated)
    assert model.D.fake_class == EXPRESSIONS and e_fake.shape[1] == EXPRESSIONS + 1
    by_hand = (F.cross_entropy(e_source, b["label"]) + F.cross_entropy(i_target, b["target"]["identity"])
               - F.log_softmax(e_fake, 1)[:, EXPRESSIONS].mean())
    got = model.discriminator_loss(b["image"], b["label"], b["target"]["image"], b["target"]["identity"], generated)
    assert got.item() == pytest.approx(by_hand.item(), rel=1e-5)


def test_generator_asks_d_for_the_source_expression_and_the_target_identity():
    model = small()
    model.eval()
    b = batch()
    encoded = model.encode(b["image"], b["target"]["image"])
    terms = model.generator_losses(b["image"], b["label"], b["target"]["image"], b["target"]["identity"], encoded)
    e, i = model.D(encoded[2])
    assert terms["g"].item() == pytest.approx((F.cross_entropy(e, b["label"])
                                               + F.cross_entropy(i, b["target"]["identity"])).item(), rel=1e-5)
    assert terms["irec"].item() == pytest.approx((encoded[2] - b["target"]["image"]).abs().mean().item(), rel=1e-6)
    assert terms["erec"].item() == pytest.approx((encoded[2] - b["image"]).abs().mean().item(), rel=1e-6)


# ----------------------------------------------------------------------------- which parameters each loss reaches

def grads_of(model, loss):
    model.zero_grad(set_to_none=True)
    loss.backward(retain_graph=True)
    return {name.split(".")[0] for name, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


def test_each_term_reaches_the_parameters_it_should():
    model = small()
    b = batch()
    encoded = model.encode(b["image"], b["target"]["image"])
    terms = model.generator_losses(b["image"], b["label"], b["target"]["image"], b["target"]["identity"], encoded)
    generator = {"G_es", "G_et", "G_de"}
    assert grads_of(model, terms["irec"]) == generator
    assert grads_of(model, terms["ef"]) == generator and grads_of(model, terms["if"]) == generator  # h1, h2 frozen
    assert grads_of(model, terms["des"]) == generator | {"D_es"}
    assert grads_of(model, terms["det"]) == generator | {"D_et"}
    assert "D" in grads_of(model, terms["g"])          # the task freezes D for this step (test below)
    d_loss = model.discriminator_loss(b["image"], b["label"], b["target"]["image"], b["target"]["identity"], encoded[2])
    assert grads_of(model, d_loss) == {"D"}            # x_bar detached: D's half of L_adv trains D only


def test_reversal_sends_the_encoder_the_opposite_of_the_discriminators_gradient():
    model = small()
    b = batch()
    f_e = model.G_es(b["image"]).detach().requires_grad_(True)
    generated = model.G_es(torch.rand_like(b["image"])).detach()
    consistency_loss(model.D_es(f_e), model.D_es(generated)).backward()
    reversed_grad = f_e.grad.clone()
    f_plain = f_e.detach().requires_grad_(True)
    net = model.D_es.net
    consistency_loss(net(f_plain).squeeze(1), net(generated).squeeze(1)).backward()
    assert torch.allclose(reversed_grad, -f_plain.grad)


def test_a_stage_two_step_trains_g_and_d_and_leaves_the_frozen_copies_alone():
    model = small()
    task = with_amp(TERGANTask(model))
    frozen = copy.deepcopy(model.h1.state_dict()), copy.deepcopy(model.h2.state_dict())
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    logged = task.train_step(batch(), 0)
    assert set(logged) >= {"loss", "d", "g", "des", "det", "irec", "erec", "ef", "if"}
    changed = {name.split(".")[0] for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert changed == {"G_es", "G_et", "G_de", "D", "D_es", "D_et"}
    for state, module in zip(frozen, (model.h1, model.h2)):
        assert all(torch.equal(v, module.state_dict()[k]) for k, v in state.items())  # incl. BatchNorm statistics
    assert all(not p.requires_grad for p in model.h1.parameters()) and all(p.requires_grad for p in model.D.parameters())


def test_the_frozen_copies_stay_in_eval_mode():
    model = small()
    model.train()
    assert model.G_es.training and not model.h1.copy.training and not model.h2.copy.training


def test_stage_two_starts_from_stage_one_encoders():
    model = small()
    stage_one = with_amp(StageOneTask(model, lr=1e-2))
    for step in range(3):
        stage_one.train_step(batch(seed=step), step)
    assert not torch.equal(model.G_es.fc.weight, model.h1.copy.fc.weight)      # h1 still the initial copy
    model.freeze_stage_one()
    for mine, frozen in ((model.G_es, model.h1.copy), (model.G_et, model.h2.copy)):
        assert all(torch.equal(v, frozen.state_dict()[k]) for k, v in mine.state_dict().items())
    stage_two = with_amp(TERGANTask(model))
    stage_two.train_step(batch(), 0)
    assert not torch.equal(model.G_es.fc.weight, model.h1.copy.fc.weight)      # G_es moves on, h1 keeps stage 1


def test_stage_one_trains_the_encoders_with_their_heads_only():
    model = small()
    task = with_amp(StageOneTask(model))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    task.train_step(batch(), 0)
    changed = {name.split(".")[0] for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert changed == {"G_es", "G_et"}


def test_recognition_trains_the_classifier_only_on_a_frozen_encoder():
    model = small()
    task = with_amp(RecognitionTask(model.G_es, EXPRESSIONS))
    encoder_before = copy.deepcopy(model.G_es.state_dict())
    first = task.train_step(batch(), 0)["loss"]
    for step in range(30):
        last = task.train_step(batch(), step)["loss"]
    assert last < first
    assert all(torch.equal(v, model.G_es.state_dict()[k]) for k, v in encoder_before.items())  # BN stats too
    logits, labels, features = task.predict(batch())
    assert logits.shape == (4, EXPRESSIONS) and features.shape == (4, 30)
