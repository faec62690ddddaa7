import torch

from spriteforge.config import ModelConfig
from spriteforge.diffusion.edm import EDMPrecond, edm_loss, sample_sigma
from spriteforge.config import DiffusionConfig
from spriteforge.models.unet import UNet


def _net(**kw):
    torch.manual_seed(0)
    return UNet(ModelConfig(preset="tiny", in_channels=4, image_size=16, **kw))


def _wake(net):
    """Give every zero-initialised layer random weights, as training would."""
    for p in net.parameters():
        if p.abs().sum() == 0:
            torch.nn.init.normal_(p, std=0.05)
    return net


def test_shapes_for_presets_and_patch():
    for preset, patch in (("tiny", 1), ("tiny", 2), ("small", 2)):
        net = UNet(ModelConfig(preset=preset, patch=patch, in_channels=4, image_size=32, num_classes=3))
        x = torch.randn(2, 4, 32, 32)
        assert net(x, torch.zeros(2), class_labels=torch.tensor([0, -1])).shape == x.shape


def test_zero_init_output_and_labels_matter_after_training_step():
    net = _net(num_classes=2)
    x = torch.randn(2, 4, 16, 16)
    assert net(x, torch.zeros(2)).abs().max() == 0  # zero-initialised output layer: starts as "predict 0"
    _wake(net)
    a = net(x, torch.zeros(2), class_labels=torch.tensor([0, 0]))
    b = net(x, torch.zeros(2), class_labels=torch.tensor([1, 1]))
    assert not torch.allclose(a, b)


def test_frame_attention_mixes_frames_only_within_a_set():
    net = _wake(_net(frame_attention=True))
    x = torch.randn(6, 4, 16, 16)  # two sets of 3 frames
    out = net(x, torch.zeros(6), frames=3)
    x2 = x.clone()
    x2[0] += 1.0  # change frame 0 of set 0
    out2 = net(x2, torch.zeros(6), frames=3)
    assert not torch.allclose(out[1], out2[1])  # frames of the same set see the change
    assert torch.allclose(out[3:], out2[3:], atol=1e-6)  # the other set does not


def test_control_channels_optional():
    net = _net(control_channels=1)
    x = torch.randn(2, 4, 16, 16)
    assert net(x, torch.zeros(2)).shape == x.shape
    assert net(x, torch.zeros(2), control=torch.ones(2, 1, 16, 16)).shape == x.shape


def test_edm_precond_identity_limits():
    """At sigma -> 0, D(x) -> x (c_skip -> 1, c_out -> 0), whatever the network says."""
    net = _net()
    torch.nn.init.normal_(net.conv_out.weight, std=1.0)
    D = EDMPrecond(net, 0.5)
    x = torch.randn(2, 4, 16, 16)
    assert torch.allclose(D(x, torch.full((2,), 1e-6)), x, atol=1e-4)


def test_edm_loss_weighting_makes_unit_target_at_init():
    """With F = 0 the loss is lambda * c_skip-error, which EDM's weighting makes exactly 1 in expectation for
    data of std sigma_data: E[loss] = 1 at every sigma."""
    class Zero(torch.nn.Module):  # F_theta = 0
        def forward(self, x, c_noise, **cond):
            return torch.zeros_like(x)
    D = EDMPrecond(Zero(), 0.5)
    y = torch.randn(4096, 4, 2, 2) * 0.5
    for s in (0.1, 1.0, 10.0):
        loss = edm_loss(D, y, torch.full((4096,), s), torch.randn_like(y)).mean()
        assert abs(float(loss) - 1.0) < 0.05, (s, float(loss))


def test_sigma_distribution_is_lognormal():
    cfg = DiffusionConfig()
    s = sample_sigma(200_000, cfg, torch.Generator().manual_seed(0))
    assert abs(s.log().mean().item() - cfg.P_mean) < 0.02 and abs(s.log().std().item() - cfg.P_std) < 0.02
