// Registers the zoomkern_C operator schemas and their CPU kernels; importing zoomkern._C loads them.
// CUDA kernels (csrc/**/*.cu) add TORCH_LIBRARY_IMPL(zoomkern_C, CUDA, m) blocks in their own files.
#include <Python.h>
#include <torch/library.h>

#include <string>

#include "common/cpu_capability.h"
#include "common/ops.h"

// A bare module: the ops live in torch.ops.zoomkern_C, so no pybind11 bindings are needed.
extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}

TORCH_LIBRARY(zoomkern_C, m) {
  m.def("softmax_fwd(Tensor x, Tensor? mask, float temperature, float smoothing) -> (Tensor, Tensor)");
  m.def(
      "softmax_bwd(Tensor p, Tensor grad_p, Tensor grad_ent, Tensor? mask, float temperature, float smoothing) "
      "-> Tensor");
  m.def("sample(Tensor probs, int k, bool replace, Tensor seed) -> Tensor");
  m.def(
      "gather(Tensor image, Tensor offsets, int ph, int pw, str layout, ScalarType out_dtype, Tensor? mean, "
      "Tensor? std) -> Tensor");
  // Which build of the *_cpu_vec.cpp kernels runs now ("AVX2" or "DEFAULT"; python -m zoomkern.info).
  m.def("cpu_capability() -> str", []() { return std::string(zoomkern::cpu_capability()); });
}

TORCH_LIBRARY_IMPL(zoomkern_C, CPU, m) {
  m.impl("softmax_fwd", &zoomkern::softmax_fwd_cpu);
  m.impl("softmax_bwd", &zoomkern::softmax_bwd_cpu);
  m.impl("sample", &zoomkern::sample_cpu);
  m.impl("gather", &zoomkern::gather_cpu);
}
