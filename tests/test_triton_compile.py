"""Every Triton kernel compiles for Hopper (sm_90) without a GPU: the signatures and constexpr
branches the launchers use, in float32 and float64 (loop-carried paths). Interpreted kernels cannot be
compiled, so these tests skip under TRITON_INTERPRET=1."""

import pytest

triton = pytest.importorskip("triton")

import zoomkern.triton as zt  # noqa: E402


def _signatures():
    """(kernel, signature, constexprs): every kernel and branch in float32, loop-carried paths in float64."""
    ks = zt.KERNELS
    ints = ("B", "N", "K", "stride_x", "stride_m", "stride_p", "stride_gp", "stride_gx", "stride_o")
    ptr_types = dict(mask_ptr="*u8", seed_ptr="*i64", out_ptr="*i64")
    variants = []
    for dt, single in (("fp32", True), ("fp32", False), ("fp64", False)):
        cx = dict(HAS_MASK=True, SMOOTH=True, SINGLE=single, ROWS=2 if not single else 8, BLOCK_N=512)
        variants += [(ks["_spatial_softmax_fwd_kernel"], dt, cx), (ks["_spatial_softmax_bwd_kernel"], dt, cx)]
        variants.append((ks["_sample_patches_kernel"], dt, dict(ROWS=cx["ROWS"], BLOCK_N=1024)))
    for dt in ("fp32", "fp64"):
        variants.append((ks["_sample_replace_kernel"], dt, dict(BLOCK_K=16, BLOCK_N=1024)))
    out = []
    for kern, dt, cx in variants:
        sig = {}
        for n in kern.arg_names:
            if n not in cx:
                sig[n] = ptr_types.get(n, f"*{dt}") if n.endswith("_ptr") else "i32" if n in ints else "fp32"
        out.append((kern, sig, cx))
    gk = ks["_gather_patches_kernel"]
    for img, outd, f64 in (("u8", "fp32", False), ("fp32", "bf16", False), ("u16", "fp64", True)):
        cx = dict(HAS_MEAN=True, HAS_STD=True, NORM_F64=f64, ROWS=256, BLOCK_W=16)
        ptrs = dict(img_ptr=f"*{img}", off_ptr="*i64", mean_ptr="*fp32", std_ptr="*fp32", out_ptr=f"*{outd}")
        sig = {n: ptrs.get(n, "i64" if n.startswith("s") else "i32") for n in gk.arg_names if n not in cx}
        out.append((gk, sig, cx))
    return out


@pytest.mark.skipif(zt.INTERPRETED, reason="interpreted kernels cannot be compiled")
def test_compiles_for_hopper():
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    target = GPUTarget("cuda", 90, 32)
    for kern, sig, cx in _signatures():
        sig = dict(sig, **{k: "constexpr" for k in cx})
        assert list(sig) == [n for n in kern.arg_names if n in sig], kern.__name__
        compiled = triton.compile(ASTSource(fn=kern, signature=sig, constexprs=cx), target=target)
        assert compiled.asm["cubin"], kern.__name__
        assert "sm_90" in compiled.asm["ptx"]


@pytest.mark.skipif(zt.INTERPRETED, reason="interpreted kernels cannot be compiled")
def test_split_kernels_compile_for_hopper():
    """The split-row (wide row) kernels, which zt.KERNELS does not list, in float32 and float64."""
    import importlib

    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    # zoomkern.triton re-exports the function ``sample``, shadowing the submodule's attribute.
    zs, zsm = (importlib.import_module(f"zoomkern.triton.{m}") for m in ("sample", "softmax"))
    sm = dict(HAS_MASK=True, SMOOTH=True, CHUNK=4096, BLOCK_N=2048)
    gum = dict(CHUNK=4096, K_P=64, NC_P=64)
    cases = [(zsm._softmax_stats_kernel, dict(HAS_MASK=True, CHUNK=4096, BLOCK_N=2048))]
    cases += [(zsm._softmax_apply_kernel, sm), (zsm._softmax_bwd_split_kernel, dict(sm, WRITE=False))]
    cases += [(zsm._softmax_combine_kernel, dict(CB=64))]
    cases += [
        (zsm._softmax_bwd_split_kernel, dict(sm, WRITE=True)),
        (zs._gumbel_merge_kernel, dict(M_P=4096, K_P=64)),
    ]
    cases += [(zs._gumbel_chunk_kernel, dict(gum, CANDIDATES=c)) for c in (False, True)]
    cases += [(zs._gumbel_keys_kernel, dict(CHUNK=4096))]
    cases += [
        (zs._replace_chunk_kernel, dict(CHUNK=2048)),
        (zs._replace_draw_kernel, dict(CHUNK=2048, NC_P=128)),
    ]
    i64 = ("mask_ptr", "seed_ptr", "out_ptr", "ci_ptr", "clast_ptr")
    f64 = ("csum_ptr",)  # with-replacement chunk sums are float64 whatever the probs' dtype
    for dt in ("fp32", "fp64"):
        for kern, cx in cases:
            sig = {n: "i32" for n in kern.arg_names}
            sig.update({n: "fp32" for n in ("t_hi", "t_lo", "s_hi", "s_lo") if n in sig})
            sig.update({n: f"*{dt}" for n in sig if n.endswith("_ptr")})
            sig.update({n: "*u8" if n == "mask_ptr" else "*i64" for n in i64 if n in sig})
            sig.update({n: "*fp64" for n in f64 if n in sig})
            sig.update({k: "constexpr" for k in cx})
            compiled = triton.compile(
                ASTSource(fn=kern, signature=sig, constexprs=cx), target=GPUTarget("cuda", 90, 32)
            )
            assert "sm_90" in compiled.asm["ptx"], kern.__name__
