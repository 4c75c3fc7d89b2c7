import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import zoomkern as zk


def test_centres_of_cells():
    # 10x10 grid on a 100x100 image: cell (r, c) centre is (10r+5, 10c+5); a 6x6 patch starts 3 before.
    idx = torch.tensor([[0, 9, 99, 55]])
    off = zk.cells_to_offsets(idx, (10, 10), (100, 100), (6, 6))
    assert off.dtype == torch.int64 and off.shape == (1, 4, 2)
    assert off.tolist() == [[[2, 2], [2, 92], [92, 92], [52, 52]]]


@given(
    st.integers(1, 50),
    st.integers(1, 50),
    st.integers(1, 3000),
    st.integers(1, 3000),
    st.integers(1, 64),
    st.integers(1, 64),
)
def test_patch_centre_within_half_pixel_of_cell_centre(gh, gw, H, W, ph, pw):
    idx = torch.arange(gh * gw).view(1, -1)
    off = zk.cells_to_offsets(idx, (gh, gw), (H, W), (ph, pw))
    r, c = idx // gw, idx % gw
    cy, cx = (r + 0.5) * H / gh, (c + 0.5) * W / gw
    py, px = off[..., 0] + ph // 2, off[..., 1] + pw // 2
    assert ((py - cy).abs() <= 1).all() and ((px - cx).abs() <= 1).all()


def test_bad_inputs():
    with pytest.raises(TypeError, match="indices"):
        zk.cells_to_offsets(torch.tensor([[0]], dtype=torch.int32), (2, 2), (10, 10), (2, 2))
    with pytest.raises(ValueError, match="grid_size"):
        zk.cells_to_offsets(torch.tensor([[0]]), (0, 2), (10, 10), (2, 2))
    with pytest.raises(ValueError, match="patch_size"):
        zk.cells_to_offsets(torch.tensor([[0]]), (2, 2), (10, 10), (2, -1))
    with pytest.raises(ValueError, match="indices must lie"):
        zk.cells_to_offsets(torch.tensor([[4]]), (2, 2), (10, 10), (2, 2))
