// CPU emulation of the CUDA execution model for the generated kernels (test infrastructure).
//
// A generated .cu is compiled as C++ with this header force-included (g++ -include cuda_emu.h): it defines
// __CUDACC__ (so the kernels compile, not their host shim) but not __CUDA_ARCH__ (so loads and half /
// bfloat16 conversions take the common header's host paths: plain reads, bit-exact round-to-nearest-even
// conversion).  A launch runs block after block; inside a block every thread is a fiber with its own stack,
// scheduled cooperatively, so barriers and warp shuffles synchronise as on the device:
//
//   * __syncthreads(): every thread of the block waits at the same barrier; a thread that has returned while
//     others wait is an error (the hardware behaviour is undefined);
//   * __shfl_{xor,down,up,}_sync, __ballot_sync, __any_sync, __all_sync, __syncwarp: the calling lane must be
//     in the mask, the mask must be exactly the warp's live (not returned) lanes, every lane of the mask must
//     reach the same kind of warp operation with the same mask, and a lane may only read a lane of the mask;
//     anything else is an error (stricter than the hardware: the kernels are warp-synchronous by design);
//   * no runnable thread while some wait: deadlock, an error;
//   * every vector / scalar global access goes through AN_HOST_ACCESS (cuda_common): misaligned is an error;
//   * __shared__ variables are static storage shared by the fibers of the block being run (one block at a
//     time), filled with 0xff bytes (a NaN) before each block so reads of unwritten shared memory show.
//
// Threads run in an order set per launch: forward, reverse, a seeded shuffle of every scheduling pass, or
// warps running ahead one at a time (the last warp first) from one barrier to the next.
// Errors stop the launch; the entry point returns nonzero and an_emu_error() says what happened.
#ifndef ALGEBRANETS_CUDA_EMU_H
#define ALGEBRANETS_CUDA_EMU_H

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>
#include <sys/mman.h>

namespace an_emu {

struct dim3 { unsigned int x, y, z; };

enum State : int { READY = 0, WAIT_BAR, WAIT_WARP, DONE, DEAD };
enum WarpOp : int { OP_SHFL = 0, OP_BALLOT, OP_SYNCWARP };

struct Fiber {
  void* sp = nullptr;
  int tid = 0;
  State state = READY;
  dim3 idx{0, 0, 0};
  // a pending warp operation
  int op = 0;
  unsigned int mask = 0;
  int src = 0;                 // source lane (shuffles), -1: own value
  unsigned long long value = 0, result = 0;
};

struct Emu {
  dim3 grid{1, 1, 1}, block{1, 1, 1}, bidx{0, 0, 0};
  std::vector<Fiber> fibers;
  Fiber* cur = nullptr;
  void* sched_sp = nullptr;
  char* stacks = nullptr;
  size_t stack_bytes = 64 * 1024, page = 4096, nstacks = 0;
  void (*thunk)(const void*) = nullptr;
  const void* ctx = nullptr;
  std::string error;
  std::vector<int> order;
  unsigned long long rng = 0;
  long long warp_ops = 0, barriers = 0, switches = 0;
};

inline Emu g;

[[noreturn]] inline void fail_in_fiber(const std::string& what);

}  // namespace an_emu

// ---- context switch (x86-64 System V: callee-saved registers on the stack) -----------------------------
#if defined(__x86_64__)
extern "C" void an_emu_switch(void** save_sp, void* new_sp);
asm(R"(
  .text
  .globl an_emu_switch
  .hidden an_emu_switch
  .type an_emu_switch, @function
an_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size an_emu_switch, .-an_emu_switch
)");
#else
#error "the CUDA emulation's fibers need x86-64 (add a context switch for this architecture)"
#endif

namespace an_emu {

inline void fiber_main();

inline void to_scheduler() {
  ++g.switches;
  an_emu_switch(&g.cur->sp, g.sched_sp);
}

inline void ensure_stacks(size_t n) {
  if (g.nstacks >= n) return;
  if (g.stacks) munmap(g.stacks, g.nstacks * (g.stack_bytes + g.page));
  const size_t each = g.stack_bytes + g.page;
  void* p = mmap(nullptr, n * each, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) { std::fprintf(stderr, "an_emu: cannot map fiber stacks\n"); std::abort(); }
  g.stacks = static_cast<char*>(p);
  g.nstacks = n;
  for (size_t i = 0; i < n; ++i) mprotect(g.stacks + i * each, g.page, PROT_NONE);  // guard page below
}

inline void start_fiber(Fiber& f, size_t i) {
  char* top = g.stacks + (i + 1) * (g.stack_bytes + g.page);
  void** sp = reinterpret_cast<void**>(top);
  *--sp = nullptr;                                            // fake return address of fiber_main
  *--sp = reinterpret_cast<void*>(&fiber_main);               // where the first switch "returns"
  for (int r = 0; r < 6; ++r) *--sp = nullptr;                // rbp rbx r12 r13 r14 r15
  f.sp = sp;
}

inline void fiber_main() {
  g.thunk(g.ctx);
  g.cur->state = DONE;
  to_scheduler();
  __builtin_trap();  // never resumed
}

inline std::string where() {
  char buf[160];
  const Fiber* f = g.cur;
  std::snprintf(buf, sizeof buf, "block (%u,%u,%u) thread (%u,%u,%u) [warp %d lane %d]", g.bidx.x, g.bidx.y,
                g.bidx.z, f->idx.x, f->idx.y, f->idx.z, f->tid / 32, f->tid % 32);
  return buf;
}

[[noreturn]] inline void fail_in_fiber(const std::string& what) {
  if (g.error.empty()) g.error = what + " in " + where();
  g.cur->state = DEAD;
  to_scheduler();
  __builtin_trap();
}

inline void check_access(const void* p, size_t bytes) {
  if (reinterpret_cast<uintptr_t>(p) % bytes != 0) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "misaligned %zu-byte global access at %p", bytes, p);
    fail_in_fiber(buf);
  }
}

inline int lane() { return g.cur->tid % 32; }
inline unsigned int warp_base() { return (unsigned int)(g.cur->tid / 32) * 32u; }
inline unsigned int warp_size_of(unsigned int base) {
  const unsigned int n = (unsigned int)g.fibers.size() - base;
  return n < 32u ? n : 32u;
}

inline unsigned long long warp_op(int op, unsigned int mask, int src, unsigned long long value) {
  Fiber& f = *g.cur;
  if (!((mask >> lane()) & 1u)) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "warp operation with mask 0x%08x that does not include the calling lane", mask);
    fail_in_fiber(buf);
  }
  f.op = op; f.mask = mask; f.src = src; f.value = value;
  f.state = WAIT_WARP;
  ++g.warp_ops;
  to_scheduler();
  return f.result;
}

inline void barrier() {
  g.cur->state = WAIT_BAR;
  ++g.barriers;
  to_scheduler();
}

template <typename T> inline unsigned long long to_bits(T v) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle of a type wider than 8 bytes");
  unsigned long long u = 0; std::memcpy(&u, &v, sizeof(T)); return u;
}
template <typename T> inline T from_bits(unsigned long long u) { T v; std::memcpy(&v, &u, sizeof(T)); return v; }

inline void check_width(int width) {
  if (width <= 0 || width > 32 || (width & (width - 1))) fail_in_fiber("shuffle width must be a power of 2 <= 32");
}

// Resolve the warp operations of warp `w` when all its live lanes wait at one; returns true if released.
// Sets g.error (with `cur` unset) on a malformed operation.
inline bool resolve_warp(unsigned int base, std::string& err) {
  const unsigned int n = warp_size_of(base);
  unsigned int live = 0, waiting = 0;
  for (unsigned int l = 0; l < n; ++l) {
    const State s = g.fibers[base + l].state;
    if (s != DONE) live |= 1u << l;
    if (s == WAIT_WARP) waiting |= 1u << l;
  }
  if (!waiting) return false;
  if (waiting != live) return false;  // others still running or at a barrier: decided by the caller
  char buf[256];
  const Fiber& first = g.fibers[base + (unsigned)__builtin_ctz(waiting)];
  for (unsigned int l = 0; l < n; ++l) {
    const Fiber& f = g.fibers[base + l];
    if (!((waiting >> l) & 1u)) continue;
    if (f.mask != first.mask || f.op != first.op) {
      std::snprintf(buf, sizeof buf, "warp %u: lanes disagree on a warp operation (lane %d: op %d mask 0x%08x; lane %u: "
                    "op %d mask 0x%08x)", base / 32, first.tid % 32, first.op, first.mask, l, f.op, f.mask);
      err = buf; return false;
    }
  }
  if (first.mask != live) {
    std::snprintf(buf, sizeof buf, "warp %u: warp operation with mask 0x%08x, but the live lanes are 0x%08x", base / 32,
                  first.mask, live);
    err = buf; return false;
  }
  unsigned long long ballot = 0;
  if (first.op == OP_BALLOT)
    for (unsigned int l = 0; l < n; ++l)
      if ((waiting >> l) & 1u) ballot |= (g.fibers[base + l].value ? 1ull : 0ull) << l;
  for (unsigned int l = 0; l < n; ++l) {
    if (!((waiting >> l) & 1u)) continue;
    Fiber& f = g.fibers[base + l];
    if (first.op == OP_SHFL) {
      if (f.src < 0 || f.src == (int)l) {
        f.result = f.value;
      } else if (f.src >= (int)n || !((first.mask >> f.src) & 1u)) {
        std::snprintf(buf, sizeof buf, "warp %u lane %u: shuffle reads lane %d, which is not in the mask 0x%08x",
                      base / 32, l, f.src, first.mask);
        err = buf; return false;
      } else {
        f.result = g.fibers[base + f.src].value;
      }
    } else {
      f.result = ballot;
    }
  }
  for (unsigned int l = 0; l < n; ++l)
    if ((waiting >> l) & 1u) g.fibers[base + l].state = READY;
  return true;
}

inline unsigned long long next_rand() {
  g.rng ^= g.rng << 13; g.rng ^= g.rng >> 7; g.rng ^= g.rng << 17; return g.rng;
}

// Run one block to completion; returns false on error (g.error set).
inline bool run_block(int mode) {
  const size_t n = g.fibers.size();
  for (size_t i = 0; i < n; ++i) {
    Fiber& f = g.fibers[i];
    f = Fiber();
    f.tid = (int)i;
    f.idx = dim3{(unsigned)(i % g.block.x), (unsigned)((i / g.block.x) % g.block.y),
                 (unsigned)(i / ((size_t)g.block.x * g.block.y))};
    start_fiber(f, i);
  }
  g.order.resize(n);
  for (size_t i = 0; i < n; ++i) g.order[i] = (int)(mode == 1 ? n - 1 - i : i);
  size_t done = 0;
  std::string err;
  auto step = [&](Fiber& f) {  // run one ready fiber until it blocks or returns; false on error
    g.cur = &f;
    ++g.switches;
    an_emu_switch(&g.sched_sp, f.sp);
    g.cur = nullptr;
    if (f.state == DONE) ++done;
    return f.state != DEAD;
  };
  for (;;) {
    if (mode == 2)
      for (size_t i = n; i > 1; --i) std::swap(g.order[i - 1], g.order[next_rand() % i]);
    bool ran = false;
    if (mode == 3) {
      // warps run ahead one at a time, the last warp first: each one through all its warp operations until
      // it waits at a barrier or returns (a schedule the device may pick, since warps are independent
      // between barriers; it exposes a missing barrier between a shared-memory read and the next write)
      for (size_t base = (n - 1) / 32 * 32 + 32; base >= 32; base -= 32) {
        for (;;) {
          bool any = false;
          for (size_t l = base - 32; l < base && l < n; ++l)
            if (g.fibers[l].state == READY) {
              any = ran = true;
              if (!step(g.fibers[l])) return false;
            }
          if (!any && !resolve_warp((unsigned)(base - 32), err)) break;
          if (!err.empty()) break;
        }
        if (!err.empty()) break;
      }
    } else {
      for (size_t k = 0; k < n; ++k) {
        Fiber& f = g.fibers[g.order[k]];
        if (f.state != READY) continue;
        ran = true;
        if (!step(f)) return false;
      }
    }
    if (!err.empty()) { g.error = err + " in block (" + std::to_string(g.bidx.x) + "," + std::to_string(g.bidx.y) + ")"; return false; }
    if (done == n) return true;
    if (ran) continue;          // let everyone run until blocked before deciding anything
    bool released = false;
    for (size_t base = 0; base < n; base += 32) {
      if (resolve_warp((unsigned)base, err)) released = true;
      if (!err.empty()) { g.error = err + " in block (" + std::to_string(g.bidx.x) + "," + std::to_string(g.bidx.y) + ")"; return false; }
    }
    if (released) continue;
    // nobody runs and no warp operation completes: a barrier, or a deadlock
    size_t at_bar = 0, at_warp = 0;
    for (const Fiber& f : g.fibers) { at_bar += f.state == WAIT_BAR; at_warp += f.state == WAIT_WARP; }
    char buf[256];
    if (at_bar == n - done && done == 0) {
      for (Fiber& f : g.fibers) f.state = READY;
      continue;
    }
    if (at_bar == n - done) {
      std::snprintf(buf, sizeof buf, "__syncthreads() while %zu of %zu threads have already returned", done, n);
    } else {
      // a warp whose live lanes wait partly at a barrier and partly at a warp operation, or a lane that
      // returned while the others of its mask wait at a warp operation
      int wl = -1; unsigned int wmask = 0;
      for (const Fiber& f : g.fibers) if (f.state == WAIT_WARP) { wl = f.tid; wmask = f.mask; break; }
      std::snprintf(buf, sizeof buf, "deadlock: %zu threads at __syncthreads, %zu at warp operations (thread %d waits "
                    "with mask 0x%08x), %zu returned", at_bar, at_warp, wl, wmask, done);
    }
    g.error = std::string(buf) + " in block (" + std::to_string(g.bidx.x) + "," + std::to_string(g.bidx.y) + "," +
              std::to_string(g.bidx.z) + ")";
    return false;
  }
}

// Shared-memory poisoning: the loader (tests/cuda_emulation) registers every function-local static of the
// library (the __shared__ variables: the generated code has no other) with an_emu_add_shared; each block
// starts with them filled with 0xff bytes (a NaN for float).
struct SharedVar { void* p; size_t bytes; };
inline std::vector<SharedVar> shared_vars;
inline void poison_shared() {
  for (const SharedVar& v : shared_vars) std::memset(v.p, 0xff, v.bytes);
}

inline std::mutex launch_lock;

inline int launch(const long long* cfg, void (*thunk)(const void*), const void* ctx) {
  const std::lock_guard<std::mutex> hold(launch_lock);
  g.error.clear();
  g.grid = dim3{(unsigned)cfg[0], (unsigned)cfg[1], (unsigned)cfg[2]};
  g.block = dim3{(unsigned)cfg[3], (unsigned)cfg[4], (unsigned)cfg[5]};
  const int mode = (int)cfg[6];
  g.rng = (unsigned long long)cfg[7] * 0x9E3779B97F4A7C15ull + 1;
  const size_t nthreads = (size_t)g.block.x * g.block.y * g.block.z;
  if (nthreads == 0 || nthreads > 1024 || g.grid.x == 0 || g.grid.y == 0 || g.grid.z == 0 || g.grid.y > 65535 ||
      g.grid.z > 65535) {
    g.error = "invalid launch configuration";
    return 1;
  }
  ensure_stacks(nthreads);
  g.fibers.assign(nthreads, Fiber());
  g.thunk = thunk; g.ctx = ctx;
  for (unsigned z = 0; z < g.grid.z; ++z)
    for (unsigned y = 0; y < g.grid.y; ++y)
      for (unsigned x = 0; x < g.grid.x; ++x) {
        g.bidx = dim3{x, y, z};
        poison_shared();
        if (!run_block(mode)) return 1;
      }
  return 0;
}

template <typename T> inline T arg(long long v) {
  if constexpr (std::is_pointer<T>::value) return reinterpret_cast<T>(static_cast<intptr_t>(v));
  else return static_cast<T>(v);
}

template <typename... P> struct Call {
  void (*kernel)(P...);
  const long long* args;
  template <size_t... I> void go(std::index_sequence<I...>) const { kernel(arg<P>(args[I])...); }
  static void run(const void* self) { static_cast<const Call*>(self)->go(std::index_sequence_for<P...>{}); }
};

// Launch `kernel` with cfg = {grid x, y, z, block x, y, z, order mode, seed} and its arguments as 64-bit integers.
template <typename... P> inline int run_kernel(void (*kernel)(P...), const long long* cfg, const long long* args) {
  const Call<P...> c{kernel, args};
  return launch(cfg, &Call<P...>::run, &c);
}

}  // namespace an_emu

// ---- the CUDA surface the generated code uses ----------------------------------------------------------
#define __CUDACC__ 1
#define __host__
#define __device__
#define __global__
#define __forceinline__ inline
#define __launch_bounds__(...)
// a function-local __shared__ array becomes one static object per instantiation, shared by the block's fibers
#define __shared__ static

#define threadIdx (::an_emu::g.cur->idx)
#define blockIdx (::an_emu::g.bidx)
#define blockDim (::an_emu::g.block)
#define gridDim (::an_emu::g.grid)
#define warpSize 32

#define AN_HOST_ACCESS(p, bytes) ::an_emu::check_access((p), (bytes))

inline void __syncthreads() { ::an_emu::barrier(); }
inline void __syncwarp(unsigned int mask = 0xffffffffu) { ::an_emu::warp_op(::an_emu::OP_SYNCWARP, mask, -1, 0); }

template <typename T> inline T __shfl_xor_sync(unsigned int mask, T v, int lane_mask, int width = 32) {
  ::an_emu::check_width(width);
  const int l = ::an_emu::lane(), src = l ^ lane_mask;
  const bool inside = (src & ~(width - 1)) == (l & ~(width - 1));
  return ::an_emu::from_bits<T>(::an_emu::warp_op(::an_emu::OP_SHFL, mask, inside ? src : -1, ::an_emu::to_bits(v)));
}
template <typename T> inline T __shfl_down_sync(unsigned int mask, T v, unsigned int delta, int width = 32) {
  ::an_emu::check_width(width);
  const int l = ::an_emu::lane(), src = l + (int)delta;
  const bool inside = (src & ~(width - 1)) == (l & ~(width - 1));
  return ::an_emu::from_bits<T>(::an_emu::warp_op(::an_emu::OP_SHFL, mask, inside ? src : -1, ::an_emu::to_bits(v)));
}
template <typename T> inline T __shfl_up_sync(unsigned int mask, T v, unsigned int delta, int width = 32) {
  ::an_emu::check_width(width);
  const int l = ::an_emu::lane(), src = l - (int)delta;
  const bool inside = src >= 0 && (src & ~(width - 1)) == (l & ~(width - 1));
  return ::an_emu::from_bits<T>(::an_emu::warp_op(::an_emu::OP_SHFL, mask, inside ? src : -1, ::an_emu::to_bits(v)));
}
template <typename T> inline T __shfl_sync(unsigned int mask, T v, int src_lane, int width = 32) {
  ::an_emu::check_width(width);
  const int l = ::an_emu::lane(), src = (l & ~(width - 1)) + (src_lane & (width - 1));
  return ::an_emu::from_bits<T>(::an_emu::warp_op(::an_emu::OP_SHFL, mask, src, ::an_emu::to_bits(v)));
}
inline unsigned int __ballot_sync(unsigned int mask, int pred) {
  return (unsigned int)::an_emu::warp_op(::an_emu::OP_BALLOT, mask, -1, pred ? 1u : 0u);
}
inline int __any_sync(unsigned int mask, int pred) { return __ballot_sync(mask, pred) != 0; }
inline int __all_sync(unsigned int mask, int pred) { return __ballot_sync(mask, pred) == mask; }

extern "C" __attribute__((visibility("default"))) void an_emu_add_shared(void* p, long long bytes) {
  ::an_emu::shared_vars.push_back({p, (size_t)bytes});
}
extern "C" __attribute__((visibility("default"))) const char* an_emu_error() { return ::an_emu::g.error.c_str(); }
extern "C" __attribute__((visibility("default"))) long long an_emu_counter(int which) {
  return which == 0 ? ::an_emu::g.warp_ops : which == 1 ? ::an_emu::g.barriers : ::an_emu::g.switches;
}

#endif  // ALGEBRANETS_CUDA_EMU_H
