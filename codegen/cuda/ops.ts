// CUDA sources of each ai.unifusion custom op: the kernel (templated over float,
// __half and __nv_bfloat16, accumulating in float), its C-ABI launchers, the
// onnxruntime custom-op class that calls them, and the harness test comparing the
// kernel with a float64 host reference on random inputs. The math is the op's
// reference decomposition (src/ir/ops/fused.ts) and its function body: f32
// arithmetic, one rounding to the storage type at the end.

export interface CudaOp {
  /** ONNX op type in domain ai.unifusion */
  name: string;
  /** IR fused kind */
  kind: string;
  /** file stem */
  file: string;
  /** C declarations of the launchers (unifusion_ops.h) */
  header: string;
  /** kernel + launchers (.cu) */
  kernel: string;
  /** ORT custom-op class and kernel (C++; registration adds `register` to the domain) */
  glue: string;
  /** statements adding this op's three typed ops to `domain` (an Ort::CustomOpDomain) */
  register: string;
  /** harness test: a function `int test_<file>()` returning the number of failures */
  test: string;
}

export const TYPES = [
  { suffix: 'f32', cuda: 'float', ort: 'ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT' },
  { suffix: 'f16', cuda: '__half', ort: 'ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16' },
  { suffix: 'bf16', cuda: '__nv_bfloat16', ort: 'ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16' },
] as const;

const launchers = (decl: (t: (typeof TYPES)[number]) => string) => TYPES.map((t) => decl(t)).join('\n');

// ---------------------------------------------------------------------------
// AdaRMSNorm: Y = RMSNorm(X, weight, epsilon) * (1 + scale) + shift over the last axis.
// X is [rows, D]; scale / shift are [G, D] with rows = G * (rows per group): the leading axes of X,
// then size-1 axes, then D (the broadcasting the fusion rule accepts, re-checked by the glue).

const adaArgs = (t: string) => `const ${t}* x, const ${t}* weight, const ${t}* scale, const ${t}* shift, ${t}* y, int64_t rows, int64_t d, int64_t scale_rows_per_group, int64_t shift_rows_per_group, float epsilon, void* stream`;
const adaArgsC = (t: string) => adaArgs(t === 'float' ? 'float' : t === '__half' ? 'uint16_t' : 'uint16_t');

export const ADA_RMS_NORM: CudaOp = {
  name: 'AdaRMSNorm',
  kind: 'ada_rms_norm',
  file: 'ada_rms_norm',
  header: `/* AdaRMSNorm: y[r, :] = x[r, :] * rsqrt(mean(x[r, :]^2) + epsilon) * weight * (1 + scale[g, :]) + shift[h, :]
 * with g = r / scale_rows_per_group, h = r / shift_rows_per_group; weight may be NULL (ones).
 * f16 / bf16 tensors are passed as their uint16 bit patterns. Returns 0 or a cudaError_t. */
${launchers((t) => `int unifusion_ada_rms_norm_${t.suffix}(${adaArgsC(t.cuda)});`)}`,
  kernel: `#include "unifusion_common.cuh"

namespace unifusion {

constexpr int kAdaBlock = 256;

template <typename T>
__global__ void ada_rms_norm_kernel(const T* __restrict__ x, const T* __restrict__ weight, const T* __restrict__ scale, const T* __restrict__ shift, T* __restrict__ y,
                                    int64_t d, int64_t scale_rows, int64_t shift_rows, float epsilon) {
  const int64_t row = blockIdx.x;
  const T* xr = x + row * d;
  float ss = 0.f;
  for (int64_t i = threadIdx.x; i < d; i += kAdaBlock) {
    const float v = to_float(xr[i]);
    ss += v * v;
  }
  __shared__ float red[kAdaBlock];
  red[threadIdx.x] = ss;
  __syncthreads();
  for (int s = kAdaBlock / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) red[threadIdx.x] += red[threadIdx.x + s];
    __syncthreads();
  }
  const float inv = rsqrtf(red[0] / static_cast<float>(d) + epsilon);
  const T* sc = scale + (row / scale_rows) * d;
  const T* sh = shift + (row / shift_rows) * d;
  T* yr = y + row * d;
  for (int64_t i = threadIdx.x; i < d; i += kAdaBlock) {
    float v = to_float(xr[i]) * inv;
    if (weight != nullptr) v *= to_float(weight[i]);
    yr[i] = from_float<T>(v * (1.f + to_float(sc[i])) + to_float(sh[i]));
  }
}

template <typename T>
int launch_ada_rms_norm(${adaArgs('T')}) {
  if (rows == 0 || d == 0) return 0;
  if (scale_rows_per_group <= 0 || shift_rows_per_group <= 0) return static_cast<int>(cudaErrorInvalidValue);
  ada_rms_norm_kernel<T><<<static_cast<unsigned>(rows), kAdaBlock, 0, static_cast<cudaStream_t>(stream)>>>(x, weight, scale, shift, y, d, scale_rows_per_group, shift_rows_per_group, epsilon);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace unifusion

extern "C" {
${TYPES.map(
  (t) => `int unifusion_ada_rms_norm_${t.suffix}(${adaArgsC(t.cuda)}) {
  using T = ${t.cuda};
  return unifusion::launch_ada_rms_norm<T>(reinterpret_cast<const T*>(x), reinterpret_cast<const T*>(weight), reinterpret_cast<const T*>(scale), reinterpret_cast<const T*>(shift), reinterpret_cast<T*>(y), rows, d, scale_rows_per_group, shift_rows_per_group, epsilon, stream);
}`,
).join('\n')}
}
`,
  glue: `// rows per group of a [.., 1, .., D] operand broadcast over x [.., D] (0 if it does not have that form)
static int64_t rows_per_group(const std::vector<int64_t>& x, const std::vector<int64_t>& t) {
  if (t.size() > x.size() || t.empty() || t.back() != x.back()) return 0;
  std::vector<int64_t> s(x.size() - t.size(), 1);
  s.insert(s.end(), t.begin(), t.end());
  size_t k = 0;
  while (k + 1 < x.size() && s[k] == x[k] && s[k] != 1) k++;
  int64_t per = 1;
  for (size_t i = k; i + 1 < x.size(); i++) {
    if (s[i] != 1) return 0;
    per *= x[i];
  }
  return per;
}

struct AdaRMSNormKernel {
  AdaRMSNormKernel(const OrtKernelInfo* info, ONNXTensorElementDataType type) : type_(type) {
    epsilon_ = Ort::ConstKernelInfo(info).GetAttribute<float>("epsilon");
  }
  OrtStatusPtr ComputeV2(OrtKernelContext* context) {
    return guarded([&] {
      Ort::KernelContext ctx(context);
      auto x = ctx.GetInput(0), w = ctx.GetInput(1), scale = ctx.GetInput(2), shift = ctx.GetInput(3);
      const auto xs = x.GetTensorTypeAndShapeInfo().GetShape();
      if (xs.empty()) throw std::runtime_error("AdaRMSNorm: X must have a channel axis");
      const int64_t d = xs.back(), rows = numel(xs) / (d ? d : 1);
      if (w.GetTensorTypeAndShapeInfo().GetShape() != std::vector<int64_t>{d}) throw std::runtime_error("AdaRMSNorm: weight must be [D]");
      const int64_t sr = rows_per_group(xs, scale.GetTensorTypeAndShapeInfo().GetShape());
      const int64_t hr = rows_per_group(xs, shift.GetTensorTypeAndShapeInfo().GetShape());
      if (!sr || !hr) throw std::runtime_error("AdaRMSNorm: scale/shift must be [leading axes of X, 1, ..., 1, D]");
      auto y = ctx.GetOutput(0, xs);
      void* stream = ctx.GetGPUComputeStream();
      int rc = 0;
      switch (type_) {
        case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT:
          rc = unifusion_ada_rms_norm_f32(x.GetTensorData<float>(), w.GetTensorData<float>(), scale.GetTensorData<float>(), shift.GetTensorData<float>(), y.GetTensorMutableData<float>(), rows, d, sr, hr, epsilon_, stream);
          break;
        case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16:
          rc = unifusion_ada_rms_norm_f16(bits(x), bits(w), bits(scale), bits(shift), mutable_bits(y), rows, d, sr, hr, epsilon_, stream);
          break;
        default:
          rc = unifusion_ada_rms_norm_bf16(bits(x), bits(w), bits(scale), bits(shift), mutable_bits(y), rows, d, sr, hr, epsilon_, stream);
      }
      if (rc) throw std::runtime_error("AdaRMSNorm: CUDA launch failed with error " + std::to_string(rc));
    });
  }
  float epsilon_;
  ONNXTensorElementDataType type_;
};

struct AdaRMSNormOp : Ort::CustomOpBase<AdaRMSNormOp, AdaRMSNormKernel, true> {
  explicit AdaRMSNormOp(ONNXTensorElementDataType type) : type_(type) {}
  OrtStatusPtr CreateKernelV2(const OrtApi&, const OrtKernelInfo* info, void** kernel) const {
    return guarded([&] { *kernel = new AdaRMSNormKernel(info, type_); });
  }
  const char* GetName() const { return "AdaRMSNorm"; }
  const char* GetExecutionProviderType() const { return "CUDAExecutionProvider"; }
  size_t GetInputTypeCount() const { return 4; }
  ONNXTensorElementDataType GetInputType(size_t) const { return type_; }
  size_t GetOutputTypeCount() const { return 1; }
  ONNXTensorElementDataType GetOutputType(size_t) const { return type_; }
  ONNXTensorElementDataType type_;
};
`,
  register: `  static AdaRMSNormOp ada_rms_norm_ops[] = {AdaRMSNormOp(ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT), AdaRMSNormOp(ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16), AdaRMSNormOp(ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16)};
  for (auto& op : ada_rms_norm_ops) domain.Add(&op);`,
  test: `template <typename T>
static int test_ada_rms_norm_as(const char* type, double atol, double rtol, int64_t batch, int64_t seq, int64_t d) {
  const int64_t rows = batch * seq;
  Lcg rng(1234 + d);
  std::vector<double> x = rng.normals(rows * d), w = rng.normals(d), sc = rng.normals(batch * d, 0.3), sh = rng.normals(batch * d, 0.3);
  // inputs rounded to T first, so the reference measures the kernel and not the input rounding
  auto xt = to_device_type<T>(x), wt = to_device_type<T>(w), sct = to_device_type<T>(sc), sht = to_device_type<T>(sh);
  round_like<T>(x); round_like<T>(w); round_like<T>(sc); round_like<T>(sh);
  const float eps = 1e-5f;
  std::vector<double> want(rows * d);
  for (int64_t r = 0; r < rows; r++) {
    double ss = 0;
    for (int64_t i = 0; i < d; i++) ss += x[r * d + i] * x[r * d + i];
    const double inv = 1.0 / std::sqrt(ss / d + eps);
    const int64_t g = r / seq;
    for (int64_t i = 0; i < d; i++) want[r * d + i] = x[r * d + i] * inv * w[i] * (1.0 + sc[g * d + i]) + sh[g * d + i];
  }
  DeviceBuffer<T> dx(xt), dw(wt), dsc(sct), dsh(sht), dy(rows * d);
  int rc = unifusion::launch_ada_rms_norm<T>(dx.ptr, dw.ptr, dsc.ptr, dsh.ptr, dy.ptr, rows, d, seq, seq, eps, nullptr);
  if (rc == 0) rc = static_cast<int>(cudaDeviceSynchronize());
  if (rc) return report_launch("AdaRMSNorm", type, rc);
  return compare("AdaRMSNorm", type, d, from_device_type<T>(dy.download()), want, atol, rtol);
}

static int test_ada_rms_norm() {
  int f = 0;
  for (int64_t d : {40, 3072}) {
    f += test_ada_rms_norm_as<float>("f32", 1e-5, 1e-4, 2, 7, d);
    f += test_ada_rms_norm_as<__half>("f16", 4e-3, 4e-3, 2, 7, d);
    f += test_ada_rms_norm_as<__nv_bfloat16>("bf16", 3e-2, 3e-2, 2, 7, d);
  }
  return f;
}`,
};

// ---------------------------------------------------------------------------
// LayerPool: Y[r, c] = sum_i weight[i] * X[r, i, c] for X [rows, n, C], weight [1, n].

const poolArgs = (t: string) => `const ${t}* x, const ${t}* weight, ${t}* y, int64_t rows, int64_t n, int64_t c, void* stream`;
const poolArgsC = (t: string) => poolArgs(t === 'float' ? 'float' : 'uint16_t');

export const LAYER_POOL: CudaOp = {
  name: 'LayerPool',
  kind: 'layer_pool',
  file: 'layer_pool',
  header: `/* LayerPool: y[r, c] = sum_i weight[i] * x[r, i, c] (x [rows, n, c], weight [n]); float accumulation.
 * f16 / bf16 tensors are passed as their uint16 bit patterns. Returns 0 or a cudaError_t. */
${launchers((t) => `int unifusion_layer_pool_${t.suffix}(${poolArgsC(t.cuda)});`)}`,
  kernel: `#include "unifusion_common.cuh"

namespace unifusion {

template <typename T>
__global__ void layer_pool_kernel(const T* __restrict__ x, const T* __restrict__ weight, T* __restrict__ y, int64_t rows, int64_t n, int64_t c) {
  const int64_t total = rows * c;
  for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k < total; k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = k / c, j = k % c;
    const T* xr = x + r * n * c + j;
    float acc = 0.f;
    for (int64_t i = 0; i < n; i++) acc += to_float(weight[i]) * to_float(xr[i * c]);
    y[k] = from_float<T>(acc);
  }
}

template <typename T>
int launch_layer_pool(${poolArgs('T')}) {
  const int64_t total = rows * c;
  if (total == 0) return 0;
  const int threads = 256;
  const int64_t blocks = (total + threads - 1) / threads;
  layer_pool_kernel<T><<<static_cast<unsigned>(blocks < 65535 ? blocks : 65535), threads, 0, static_cast<cudaStream_t>(stream)>>>(x, weight, y, rows, n, c);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace unifusion

extern "C" {
${TYPES.map(
  (t) => `int unifusion_layer_pool_${t.suffix}(${poolArgsC(t.cuda)}) {
  using T = ${t.cuda};
  return unifusion::launch_layer_pool<T>(reinterpret_cast<const T*>(x), reinterpret_cast<const T*>(weight), reinterpret_cast<T*>(y), rows, n, c, stream);
}`,
).join('\n')}
}
`,
  glue: `struct LayerPoolKernel {
  LayerPoolKernel(const OrtKernelInfo*, ONNXTensorElementDataType type) : type_(type) {}
  OrtStatusPtr ComputeV2(OrtKernelContext* context) {
    return guarded([&] {
      Ort::KernelContext ctx(context);
      auto x = ctx.GetInput(0), w = ctx.GetInput(1);
      const auto xs = x.GetTensorTypeAndShapeInfo().GetShape();
      if (xs.size() < 2) throw std::runtime_error("LayerPool: X must be [..., n, C]");
      const int64_t n = xs[xs.size() - 2], c = xs.back(), nc = n * c, rows = nc != 0 ? numel(xs) / nc : 0;
      if (w.GetTensorTypeAndShapeInfo().GetShape() != std::vector<int64_t>{1, n}) throw std::runtime_error("LayerPool: weight must be [1, n]");
      std::vector<int64_t> ys(xs.begin(), xs.end() - 2);
      ys.push_back(c);
      auto y = ctx.GetOutput(0, ys);
      void* stream = ctx.GetGPUComputeStream();
      int rc = 0;
      switch (type_) {
        case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT:
          rc = unifusion_layer_pool_f32(x.GetTensorData<float>(), w.GetTensorData<float>(), y.GetTensorMutableData<float>(), rows, n, c, stream);
          break;
        case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16:
          rc = unifusion_layer_pool_f16(bits(x), bits(w), mutable_bits(y), rows, n, c, stream);
          break;
        default:
          rc = unifusion_layer_pool_bf16(bits(x), bits(w), mutable_bits(y), rows, n, c, stream);
      }
      if (rc) throw std::runtime_error("LayerPool: CUDA launch failed with error " + std::to_string(rc));
    });
  }
  ONNXTensorElementDataType type_;
};

struct LayerPoolOp : Ort::CustomOpBase<LayerPoolOp, LayerPoolKernel, true> {
  explicit LayerPoolOp(ONNXTensorElementDataType type) : type_(type) {}
  OrtStatusPtr CreateKernelV2(const OrtApi&, const OrtKernelInfo* info, void** kernel) const {
    return guarded([&] { *kernel = new LayerPoolKernel(info, type_); });
  }
  const char* GetName() const { return "LayerPool"; }
  const char* GetExecutionProviderType() const { return "CUDAExecutionProvider"; }
  size_t GetInputTypeCount() const { return 2; }
  ONNXTensorElementDataType GetInputType(size_t) const { return type_; }
  size_t GetOutputTypeCount() const { return 1; }
  ONNXTensorElementDataType GetOutputType(size_t) const { return type_; }
  ONNXTensorElementDataType type_;
};
`,
  register: `  static LayerPoolOp layer_pool_ops[] = {LayerPoolOp(ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT), LayerPoolOp(ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16), LayerPoolOp(ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16)};
  for (auto& op : layer_pool_ops) domain.Add(&op);`,
  test: `template <typename T>
static int test_layer_pool_as(const char* type, double atol, double rtol, int64_t rows, int64_t n, int64_t c) {
  Lcg rng(99 + n * c);
  std::vector<double> x = rng.normals(rows * n * c), w = rng.normals(n, 0.5);
  auto xt = to_device_type<T>(x), wt = to_device_type<T>(w);
  round_like<T>(x); round_like<T>(w);
  std::vector<double> want(rows * c, 0.0);
  for (int64_t r = 0; r < rows; r++)
    for (int64_t i = 0; i < n; i++)
      for (int64_t j = 0; j < c; j++) want[r * c + j] += w[i] * x[(r * n + i) * c + j];
  DeviceBuffer<T> dx(xt), dw(wt), dy(rows * c);
  int rc = unifusion::launch_layer_pool<T>(dx.ptr, dw.ptr, dy.ptr, rows, n, c, nullptr);
  if (rc == 0) rc = static_cast<int>(cudaDeviceSynchronize());
  if (rc) return report_launch("LayerPool", type, rc);
  return compare("LayerPool", type, c, from_device_type<T>(dy.download()), want, atol, rtol);
}

static int test_layer_pool() {
  int f = 0;
  for (int64_t n : {3, 12}) {
    f += test_layer_pool_as<float>("f32", 1e-5, 1e-4, 10, n, 72);
    f += test_layer_pool_as<__half>("f16", 4e-3, 4e-3, 10, n, 72);
    f += test_layer_pool_as<__nv_bfloat16>("bf16", 3e-2, 3e-2, 10, n, 72);
  }
  return f;
}`,
};

export const CUDA_OPS: Record<string, CudaOp> = { ada_rms_norm: ADA_RMS_NORM, layer_pool: LAYER_POOL };
