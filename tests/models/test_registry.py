import shutil
import urllib.error

import pytest
import torch
import torchvision

from cxr_fast.models import ARCHITECTURES, build_model
from cxr_fast.models.pretrained import hub_cache_path


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_one_grey_channel_in_one_logit_out(arch):
    model = build_model(arch).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 1, 64, 64))
    assert out.shape == (2, 1)
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.in_channels == 1


def test_unknown_arch_and_cnn_pretrained_are_user_errors():
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model("vgg11")
    with pytest.raises(ValueError, match="no ImageNet weights"):
        build_model("cnn", pretrained="imagenet")


def test_pretrained_file_is_loaded_and_rgb_stem_folded(tmp_path):
    reference = torchvision.models.resnet18()  # stands in for the ImageNet file: same keys
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    model = build_model("resnet18", pretrained=str(path))
    torch.testing.assert_close(model.conv1.weight, reference.conv1.weight.sum(1, keepdim=True))
    torch.testing.assert_close(model.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)
    assert model.fc.out_features == 1
    # A grey image replicated to RGB gives the same stem response as the folded kernel.
    grey = torch.rand(1, 1, 32, 32)
    torch.testing.assert_close(model.conv1(grey), reference.conv1(grey.expand(1, 3, 32, 32)))


def test_old_densenet_key_names_are_mapped(tmp_path):
    state = torchvision.models.densenet121().state_dict()
    old = {k.replace("norm1", "norm.1").replace("conv2", "conv.2"): v for k, v in state.items()}
    assert any("norm.1" in k for k in old)
    path = tmp_path / "densenet121.pth"
    torch.save(old, path)
    assert build_model("densenet121", pretrained=str(path)).classifier.out_features == 1


def _offline(*_args, **_kwargs):
    raise urllib.error.URLError("no network in this test")


def test_imagenet_offline_says_to_pass_a_file(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _offline)
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    with pytest.raises(FileNotFoundError, match="pass --pretrained FILE") as error:
        build_model("resnet18", pretrained="imagenet")
    assert url in str(error.value) and str(hub_cache_path(url)) in str(error.value)
    with pytest.raises(FileNotFoundError, match="no ImageNet weights file"):
        build_model("resnet18", pretrained=str(tmp_path / "absent.pth"))
    with pytest.raises(ValueError, match="does not hold resnet50"):
        path = tmp_path / "wrong.pth"
        torch.save(torchvision.models.resnet18().state_dict(), path)
        build_model("resnet50", pretrained=str(path))


def test_imagenet_downloads_once_into_the_hub_cache_with_the_hash_check(tmp_path, monkeypatch):
    # A local file stands in for the server: what is fetched, where it lands, the hash prefix
    # torchvision's file name carries, and that a second build does not fetch again.
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    reference = torchvision.models.resnet18()
    served = tmp_path / "served.pth"
    torch.save(reference.state_dict(), served)
    calls = []

    def fake_download(url, dst, hash_prefix=None, progress=True):
        calls.append((url, hash_prefix, progress))
        shutil.copyfile(served, dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    model = build_model("resnet18", pretrained="imagenet")
    torch.testing.assert_close(model.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)
    assert calls == [(url, "f37072fd", True)]
    assert hub_cache_path(url).is_file()
    build_model("resnet18", pretrained="imagenet")
    assert len(calls) == 1
