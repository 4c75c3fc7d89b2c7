// Spatial softmax over rows of (B, N) logits with temperature, label smoothing, mask and entropy.
//
// Forward reads x once: each chunk of kChunk logits (L1-resident) gets its own max, its exps are written
// to the output, and the chunk's (max, sum e, sum e*(z-max)) are merged into the row's running stats
// (online softmax at chunk granularity, one exp per element). A second pass over the output rescales
// each chunk by exp(m_c - m) / S. Without smoothing the entropy comes from the stats alone:
// H = log S - U / S with U = sum e^(z-m) (z-m); with smoothing it needs log p per element.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros_like.h>

#include <cmath>
#include <limits>
#include <vector>

#include "../common/ops.h"

namespace zoomkern {
namespace {

constexpr int64_t kChunk = 512;

// Running stats relative to the reference max m: S = sum e^(z-m), U = sum e^(z-m) (z-m).
struct Stats {
  double m = -std::numeric_limits<double>::infinity();
  double S = 0.0;
  double U = 0.0;

  void rebase(double m_new) {
    if (S == 0.0) {  // also avoids (-inf) * 0 when nothing was seen yet
      m = m_new;
      return;
    }
    const double a = std::exp(m - m_new);
    U = a * (U + (m - m_new) * S);
    S = a * S;
    m = m_new;
  }
  void merge(const Stats& o) {
    if (o.S == 0.0) return;
    const double mm = std::max(m, o.m);
    rebase(mm);
    Stats c = o;
    c.rebase(mm);
    S += c.S;
    U += c.U;
  }
};

template <typename scalar_t>
void softmax_fwd_row(const scalar_t* x, const bool* mask, scalar_t* p, scalar_t* ent, int64_t N,
                     scalar_t T, double s, std::vector<double>& cmax) {
  const scalar_t ninf = -std::numeric_limits<scalar_t>::infinity();
  const int64_t nchunks = (N + kChunk - 1) / kChunk;
  cmax.assign(nchunks, -std::numeric_limits<double>::infinity());
  Stats row;
  int64_t n_valid = 0;
  for (int64_t c = 0; c < nchunks; ++c) {
    const int64_t j0 = c * kChunk, j1 = std::min(N, j0 + kChunk);
    scalar_t mc = ninf;
    for (int64_t j = j0; j < j1; ++j) {
      if (mask && !mask[j]) continue;
      ++n_valid;
      const scalar_t z = x[j] / T;
      mc = z > mc ? z : mc;
    }
    Stats cs;
    cs.m = static_cast<double>(mc);
    for (int64_t j = j0; j < j1; ++j) {
      const scalar_t z = x[j] / T;
      // -inf logits (and masked cells) contribute exactly 0; skipping them avoids inf - inf.
      if ((mask && !mask[j]) || mc == ninf || z == ninf) {
        p[j] = scalar_t(0);
        continue;
      }
      const scalar_t d = z - mc;
      const scalar_t e = std::exp(d);
      p[j] = e;
      cs.S += static_cast<double>(e);
      cs.U += static_cast<double>(e) * static_cast<double>(d);
    }
    cmax[c] = cs.m;
    row.merge(cs);
  }
  const scalar_t one_minus_s = static_cast<scalar_t>(1.0 - s);
  const scalar_t shift = n_valid > 0 ? static_cast<scalar_t>(s / static_cast<double>(n_valid)) : scalar_t(0);
  double h = 0.0;
  for (int64_t c = 0; c < nchunks; ++c) {
    const int64_t j0 = c * kChunk, j1 = std::min(N, j0 + kChunk);
    const scalar_t f =
        row.S > 0.0 ? static_cast<scalar_t>(std::exp(cmax[c] - row.m) / row.S) : scalar_t(0);
    if (s == 0.0) {
      for (int64_t j = j0; j < j1; ++j) p[j] *= f;
      continue;
    }
    for (int64_t j = j0; j < j1; ++j) {
      if (mask && !mask[j]) continue;  // already 0
      const scalar_t pj = one_minus_s * (p[j] * f) + shift;
      p[j] = pj;
      if (pj > scalar_t(0)) h -= static_cast<double>(pj) * std::log(static_cast<double>(pj));
    }
  }
  if (s == 0.0) h = row.S > 0.0 ? std::log(row.S) - row.U / row.S : std::numeric_limits<double>::quiet_NaN();
  *ent = static_cast<scalar_t>(h);
}

template <typename scalar_t>
void softmax_bwd_row(const scalar_t* p, const scalar_t* gp, scalar_t ge, const bool* mask, scalar_t* gx,
                     int64_t N, scalar_t T, double s) {
  int64_t n_valid = N;
  if (mask) {
    n_valid = 0;
    for (int64_t j = 0; j < N; ++j) n_valid += mask[j] ? 1 : 0;
  }
  const bool smooth = s != 0.0;
  const scalar_t shift = static_cast<scalar_t>(s / static_cast<double>(std::max<int64_t>(n_valid, 1)));
  const scalar_t one_minus_s = static_cast<scalar_t>(1.0 - s);
  // q = the unsmoothed softmax recovered from p (clamped: p - s/n can round slightly negative).
  auto q_of = [&](int64_t j) -> scalar_t {
    if (mask && !mask[j]) return scalar_t(0);
    if (!smooth) return p[j];
    const scalar_t q = (p[j] - shift) / one_minus_s;
    return q > scalar_t(0) ? q : scalar_t(0);
  };
  double dot = 0.0;
  for (int64_t j = 0; j < N; ++j) {
    const scalar_t lp = p[j] > scalar_t(0) ? std::log(p[j]) : scalar_t(0);
    scalar_t g = gp[j] - ge * (lp + scalar_t(1));
    if (smooth) g *= one_minus_s;
    gx[j] = g;  // stash g; the second pass needs sum(q g) first
    dot += static_cast<double>(q_of(j)) * static_cast<double>(g);
  }
  const scalar_t sdot = static_cast<scalar_t>(dot);
  for (int64_t j = 0; j < N; ++j) gx[j] = q_of(j) * (gx[j] - sdot) / T;
}

void check_rows(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), op, ": ", name, " must be a CPU tensor, got ", t.device());
  TORCH_CHECK(t.dim() == 2, op, ": ", name, " must be 2-D (B, N), got shape ", t.sizes());
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, op, ": ", name,
              " must be float32 or float64, got ", t.scalar_type());
}

const bool* mask_ptr(const std::optional<at::Tensor>& mask, const at::Tensor& like, const char* op,
                     at::Tensor& holder) {
  if (!mask.has_value()) return nullptr;
  TORCH_CHECK(mask->scalar_type() == at::kBool, op, ": mask must be bool, got ", mask->scalar_type());
  TORCH_CHECK(mask->device().is_cpu(), op, ": mask must be a CPU tensor, got ", mask->device());
  TORCH_CHECK(mask->sizes() == like.sizes(), op, ": mask shape ", mask->sizes(), " must equal ",
              like.sizes());
  holder = mask->contiguous();
  return holder.data_ptr<bool>();
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> softmax_fwd_cpu(const at::Tensor& x_in, const std::optional<at::Tensor>& mask,
                                                   double temperature, double smoothing) {
  check_rows(x_in, "softmax_fwd", "x");
  TORCH_CHECK(temperature > 0.0, "softmax_fwd: temperature must be > 0, got ", temperature);
  TORCH_CHECK(smoothing >= 0.0 && smoothing <= 1.0, "softmax_fwd: smoothing must be in [0, 1], got ", smoothing);
  const at::Tensor x = x_in.contiguous();
  at::Tensor mask_c;
  const bool* m = mask_ptr(mask, x, "softmax_fwd", mask_c);
  const int64_t B = x.size(0), N = x.size(1);
  at::Tensor p = at::empty_like(x);
  at::Tensor ent = at::empty({B}, x.options());
  if (B == 0 || N == 0) return {p, ent.fill_(0)};
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "softmax_fwd_cpu", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    scalar_t* pp = p.data_ptr<scalar_t>();
    scalar_t* ep = ent.data_ptr<scalar_t>();
    const scalar_t T = static_cast<scalar_t>(temperature);
    // Rows are independent and each is computed sequentially: results never depend on thread count.
    at::parallel_for(0, B, std::max<int64_t>(1, 32768 / N), [&](int64_t b0, int64_t b1) {
      std::vector<double> cmax;
      for (int64_t b = b0; b < b1; ++b)
        softmax_fwd_row<scalar_t>(xp + b * N, m ? m + b * N : nullptr, pp + b * N, ep + b, N, T, smoothing,
                                  cmax);
    });
  });
  return {p, ent};
}

at::Tensor softmax_bwd_cpu(const at::Tensor& p_in, const at::Tensor& grad_p_in, const at::Tensor& grad_ent_in,
                           const std::optional<at::Tensor>& mask, double temperature, double smoothing) {
  check_rows(p_in, "softmax_bwd", "p");
  TORCH_CHECK(grad_p_in.sizes() == p_in.sizes() && grad_p_in.scalar_type() == p_in.scalar_type(),
              "softmax_bwd: grad_p must match p in shape and dtype, got ", grad_p_in.sizes(), " ",
              grad_p_in.scalar_type());
  TORCH_CHECK(grad_ent_in.dim() == 1 && grad_ent_in.size(0) == p_in.size(0) &&
                  grad_ent_in.scalar_type() == p_in.scalar_type(),
              "softmax_bwd: grad_ent must be (B,) of p's dtype, got ", grad_ent_in.sizes(), " ",
              grad_ent_in.scalar_type());
  TORCH_CHECK(grad_p_in.device().is_cpu() && grad_ent_in.device().is_cpu(),
              "softmax_bwd: grad_p and grad_ent must be CPU tensors");
  TORCH_CHECK(temperature > 0.0, "softmax_bwd: temperature must be > 0, got ", temperature);
  TORCH_CHECK(smoothing >= 0.0 && smoothing <= 1.0, "softmax_bwd: smoothing must be in [0, 1], got ", smoothing);
  const at::Tensor p = p_in.contiguous(), gp = grad_p_in.contiguous(), ge = grad_ent_in.contiguous();
  at::Tensor mask_c;
  const bool* m = mask_ptr(mask, p, "softmax_bwd", mask_c);
  const int64_t B = p.size(0), N = p.size(1);
  // s >= 1: the probabilities are constant in the logits.
  if (smoothing >= 1.0 || B == 0 || N == 0) return at::zeros_like(p);
  at::Tensor gx = at::empty_like(p);
  AT_DISPATCH_FLOATING_TYPES(p.scalar_type(), "softmax_bwd_cpu", [&] {
    const scalar_t* pp = p.data_ptr<scalar_t>();
    const scalar_t* gpp = gp.data_ptr<scalar_t>();
    const scalar_t* gep = ge.data_ptr<scalar_t>();
    scalar_t* out = gx.data_ptr<scalar_t>();
    const scalar_t T = static_cast<scalar_t>(temperature);
    at::parallel_for(0, B, std::max<int64_t>(1, 32768 / N), [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b)
        softmax_bwd_row<scalar_t>(pp + b * N, gpp + b * N, gep[b], m ? m + b * N : nullptr, out + b * N, N, T,
                                  smoothing);
    });
  });
  return gx;
}

}  // namespace zoomkern
