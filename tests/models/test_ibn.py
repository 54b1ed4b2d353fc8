"""IBN-a: the InstanceNorm half ignores a film's own feature contrast and brightness; ImageNet
resnet18 weights carry over into resnet18_ibn."""

import torch
import torchvision

from cxr_fast.models import build_model
from cxr_fast.models.ibn import IBN, IBN_STAGES


def test_instance_half_ignores_per_image_gain_and_offset():
    torch.manual_seed(0)
    ibn = IBN(8).train()
    x = torch.randn(4, 8, 16, 16)
    gained = x.clone()
    gained[1] = 3.0 * gained[1] + 5.0  # one film brighter and higher in contrast
    out, out_gained = ibn(x), ibn(gained)
    k = ibn.in_channels
    assert k == 4
    torch.testing.assert_close(out_gained[:, :k], out[:, :k], atol=1e-4, rtol=0)
    # The BatchNorm half still sees the change (batch statistics, not per image).
    assert float((out_gained[1, k:] - out[1, k:]).abs().max().detach()) > 0.1


def test_from_batchnorm_keeps_the_affine_parameters():
    bn = torch.nn.BatchNorm2d(6)
    with torch.no_grad():
        bn.weight.copy_(torch.arange(6.0))
        bn.bias.copy_(-torch.arange(6.0))
        bn.running_mean.fill_(0.5)
    ibn = IBN.from_batchnorm(bn)
    assert torch.equal(torch.cat((ibn.instance.weight, ibn.batch.weight)), bn.weight)
    assert torch.equal(torch.cat((ibn.instance.bias, ibn.batch.bias)), bn.bias)
    assert torch.equal(ibn.batch.running_mean, bn.running_mean[3:])


def test_resnet18_ibn_has_ibn_in_the_first_three_stages_only():
    model = build_model("resnet18_ibn")
    for stage in IBN_STAGES:
        assert all(isinstance(block.bn1, IBN) for block in model.get_submodule(stage))
    assert not any(isinstance(m, IBN) for m in model.layer4.modules())


def test_imagenet_resnet18_file_initialises_resnet18_ibn(tmp_path):
    reference = torchvision.models.resnet18()  # stands in for the ImageNet file: same keys
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    model = build_model("resnet18_ibn", pretrained=str(path))
    bn = reference.layer2[0].bn1
    ibn = model.layer2[0].bn1
    assert torch.equal(torch.cat((ibn.instance.weight, ibn.batch.weight)), bn.weight)
    torch.testing.assert_close(model.layer3[1].conv2.weight, reference.layer3[1].conv2.weight)
