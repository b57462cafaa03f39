"""Recurrent layers over an algebra: `AlgebraRNN`, `AlgebraGRU`, `AlgebraLSTM` and their cells.

    lstm = AlgebraLSTM(input_size, hidden_size, algebra="H", num_layers=1, bias=True, batch_first=False,
                       dropout=0.0, bidirectional=False, method=None)
    output, (h_n, c_n) = lstm(x)        # x (L, N, input_size * d) -> output (L, N, D * hidden_size * d)
    cell = AlgebraLSTMCell(input_size, hidden_size, algebra="H")
    h, c = cell(x_t, (h, c))            # (N, input_size * d) -> 2 x (N, hidden_size * d)

Sizes count algebra elements and tensors are element-major (component k of element c at c*d + k), so the
signatures, parameter names and return values are those of torch.nn.RNN / GRU / LSTM and their cells with
every feature dimension multiplied by d: `weight_ih_l{k}[_reverse]` (G*hidden_size, layer input, d),
`weight_hh_l{k}[_reverse]` (G*hidden_size, hidden_size, d), `bias_ih_l{k}[_reverse]` and `bias_hh_...`
(G*hidden_size, d), G = 1 (RNN), 3 (GRU: r, z, n) or 4 (LSTM: i, f, g, o); h_0 / c_0 / h_n / c_n
(D*num_layers, N, hidden_size * d), D = 2 when bidirectional.  Inputs may be unbatched ((L, input_size*d)
for the layers, (input_size*d,) for the cells); packed sequences are refused (pad them).

The maths is torch's with every weight product an algebra product, weight on the left (W x = sum_i w_oi * x_i):

    RNN   h' = act(W_ih x + b_ih + W_hh h + b_hh),          act = tanh or relu
    GRU   r = sigma(W_ir x + b_ir + W_hr h + b_hr),  z = sigma(W_iz x + b_iz + W_hz h + b_hz)
          n = tanh(W_in x + b_in + r (.) (W_hn h + b_hn)),  h' = (1 - z) (.) n + z (.) h
    LSTM  i, f, g, o = sigma, sigma, tanh, sigma of (W_i* x + b_i* + W_h* h + b_h*)
          c' = f (.) c + i (.) g,  h' = o (.) tanh(c')

The gate nonlinearities (sigma, tanh, relu) act on every real component separately, and the gate products
(.) with the candidate, the cell state and h are elementwise real products per component (as in the
quaternion LSTMs of the literature), not algebra products: the algebra enters through the weights.  With
algebra="R" the layers compute exactly torch.nn.RNN / GRU / LSTM.

The input projections W_ih x of all time steps run at once through `algebra_linear`'s fast paths (one GEMM
over L * N rows); only the hidden projection runs per step, with its weight expanded / combined once per
forward pass (`runtime.functional.linear_stepper`).  `method` picks the path for both, as for AlgebraLinear.
Default initialisation: every parameter uniform in +-1/sqrt(hidden_size * s), s = mean_k sum_ij T[i,j,k]^2
(torch's 1/sqrt(hidden_size) for R; the same output variance for any algebra).
"""
from __future__ import annotations

import math
import warnings
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from .. import functional as AF
from .linear import AlgebraLayerMixin

__all__ = ["AlgebraRNN", "AlgebraGRU", "AlgebraLSTM", "AlgebraRNNCell", "AlgebraGRUCell", "AlgebraLSTMCell"]

Projection = Callable[[torch.Tensor], torch.Tensor]


# ------------------------------------------------------------------------------------------- steps
# gi: the input projection W_ih x + b_ih of one step (N, G*H*d); hh: h -> W_hh h + b_hh; gates are
# contiguous blocks of H elements, so chunking the last dimension splits them (element-major layout).
def _rnn_step(act: Callable[[torch.Tensor], torch.Tensor]):
    def step(gi: torch.Tensor, h: torch.Tensor, hh: Projection) -> torch.Tensor:
        return act(gi + hh(h))
    return step


def _gru_step(gi: torch.Tensor, h: torch.Tensor, hh: Projection) -> torch.Tensor:
    i_r, i_z, i_n = gi.chunk(3, -1)
    h_r, h_z, h_n = hh(h).chunk(3, -1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return n + z * (h - n)                       # (1 - z) n + z h


def _lstm_step(gi: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor], hh: Projection):
    h, c = state
    i, f, g, o = (gi + hh(h)).chunk(4, -1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


_MODES = {"RNN_TANH": (1, _rnn_step(torch.tanh)), "RNN_RELU": (1, _rnn_step(F.relu)),
          "GRU": (3, _gru_step), "LSTM": (4, _lstm_step)}


def _rnn_mode(nonlinearity: str, who: str) -> str:
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"{who}: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    return "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU"


# ------------------------------------------------------------------------------------------- shared
class _AlgebraRecurrent(AlgebraLayerMixin, nn.Module):
    """Parameters, initialisation and input checks shared by the layers and the cells."""

    def _setup(self, mode: str, input_size: int, hidden_size: int, algebra, bias: bool, method, device, dtype,
               who: str) -> None:
        for label, v in (("input_size", input_size), ("hidden_size", hidden_size)):
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"{who}: {label} must be a positive int (a number of algebra elements), got {v!r}")
        if isinstance(algebra, (int, float)) and not isinstance(algebra, bool):
            raise TypeError(f"{who}: the 3rd argument is the algebra (a name such as 'H' or an Algebra), got "
                            f"{algebra!r}; pass num_layers etc. by keyword, e.g. {who}(8, 16, algebra='H', "
                            f"num_layers=2)")
        A = self._setup_algebra(algebra, method, who)
        self.mode = mode
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        self._gates = _MODES[mode][0]
        self._who = f"{who}(input_size={input_size}, hidden_size={hidden_size}, algebra={A.name})"

    def _step(self, gi: torch.Tensor, state, hh: Projection):
        """One time step of this mode (looked up, not stored: the modules stay picklable)."""
        return _MODES[self.mode][1](gi, state, hh)

    def _add_weights(self, suffix: str, layer_input: int, factory: dict) -> None:
        """weight_ih{suffix} (G*H, layer_input, d), weight_hh{suffix} (G*H, H, d), biases (G*H, d)."""
        G, H, d = self._gates, self.hidden_size, self.algebra.dim
        names = [f"weight_ih{suffix}", f"weight_hh{suffix}"]
        self.register_parameter(names[0], nn.Parameter(torch.empty(G * H, layer_input, d, **factory)))
        self.register_parameter(names[1], nn.Parameter(torch.empty(G * H, H, d, **factory)))
        if self.bias:
            names += [f"bias_ih{suffix}", f"bias_hh{suffix}"]
            for n in names[2:]:
                self.register_parameter(n, nn.Parameter(torch.empty(G * H, d, **factory)))
        self._flat_weights_names.extend(names)

    def _weights(self, suffix: str):
        """(weight_ih, weight_hh, bias_ih, bias_hh) of one layer / direction (biases None without bias)."""
        biases = (getattr(self, "bias_ih" + suffix), getattr(self, "bias_hh" + suffix)) if self.bias else (None, None)
        return (getattr(self, "weight_ih" + suffix), getattr(self, "weight_hh" + suffix)) + biases

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size * AF.structure_scale(self.algebra))
        with torch.no_grad():
            for p in self.parameters():
                p.uniform_(-bound, bound)

    @property
    def all_weights(self) -> list[torch.Tensor]:
        return [getattr(self, n) for n in self._flat_weights_names]

    def linear_maps(self, rows: int) -> list[tuple[int, int, int]]:
        """(rows, in elements, out elements) of every algebra linear map one call applies to `rows` input
        rows (time steps x batch): runtime.counting counts them."""
        G, H = self._gates, self.hidden_size
        return [(rows, getattr(self, n).shape[1], G * H) for n in self._flat_weights_names if n.startswith("weight")]

    def _check_input(self, x, size: int, label: str, dims: tuple[int, ...]) -> None:
        if isinstance(x, PackedSequence):
            raise TypeError(f"{self._who}: packed sequences are not supported; pass the padded tensor "
                            f"(torch.nn.utils.rnn.pad_packed_sequence) instead")
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{self._who}: {label} must be a torch.Tensor, got {type(x).__name__}")
        d = self.algebra.dim
        if x.dim() not in dims:
            raise ValueError(f"{self._who}: {label} must have {' or '.join(map(str, dims))} dimensions, got shape "
                             f"{tuple(x.shape)}")
        if x.shape[-1] != size * d:
            raise ValueError(f"{self._who}: {label} must have {size * d} features in its last dimension ({size} "
                             f"elements x d={d}, element-major), got shape {tuple(x.shape)}")

    def _states(self, hx, shape: tuple[int, ...], batch_dim: int, batched: bool, x: torch.Tensor,
                labels: tuple[str, str]) -> list[torch.Tensor]:
        """[h] or [h, c] (LSTM) of the batched `shape`: zeros when hx is None, else hx checked against `shape`
        (without its batch_dim when the input is unbatched) and given that dim."""
        lstm = self.mode == "LSTM"
        if hx is None:
            zeros = torch.zeros(shape, dtype=x.dtype, device=x.device)
            return [zeros, zeros] if lstm else [zeros]
        if lstm and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
            raise TypeError(f"{self._who}: hx must be a tuple ({', '.join(labels)}), got {type(hx).__name__}")
        given = list(hx) if lstm else [hx]
        want = shape if batched else shape[:batch_dim] + shape[batch_dim + 1:]
        for s, label in zip(given, labels):
            if not isinstance(s, torch.Tensor) or tuple(s.shape) != want:
                got = tuple(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__
                raise ValueError(f"{self._who}: {label} must have shape {want}, got {got}")
        return given if batched else [s.unsqueeze(batch_dim) for s in given]


# ------------------------------------------------------------------------------------------- layers
class _AlgebraRNNBase(_AlgebraRecurrent):
    def __init__(self, mode: str, input_size: int, hidden_size: int, algebra, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 method: str | None = None, device=None, dtype=None) -> None:
        super().__init__()
        who = type(self).__name__
        self._setup(mode, input_size, hidden_size, algebra, bias, method, device, dtype, who)
        if not isinstance(num_layers, int) or isinstance(num_layers, bool) or num_layers <= 0:
            raise ValueError(f"{who}: num_layers must be a positive int, got {num_layers!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout <= 1:
            raise ValueError(f"{who}: dropout must be a number in [0, 1] (the probability of zeroing an "
                             f"element), got {dropout!r}")
        if dropout > 0 and num_layers == 1:
            warnings.warn(f"{who}: dropout acts between recurrent layers (on all but the last one's outputs); "
                          f"with num_layers=1 dropout={dropout} does nothing")
        self.num_layers = num_layers
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self._flat_weights_names: list[str] = []
        D = 2 if bidirectional else 1
        for layer in range(num_layers):
            for direction in range(D):
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                self._add_weights(suffix, input_size if layer == 0 else hidden_size * D,
                                  {"device": device, "dtype": dtype})
        self.reset_parameters()

    def flatten_parameters(self) -> None:
        """Nothing to do (no cuDNN weight buffer); kept so code written for nn.RNN runs unchanged."""

    def extra_repr(self) -> str:
        s = (f"{self.input_size}, {self.hidden_size}, algebra={self.algebra.name}, "
             f"method={self.method or 'default (' + AF.get_default_method() + ')'}")
        if self.mode == "RNN_RELU":
            s += ", nonlinearity='relu'"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s

    def forward(self, input: torch.Tensor, hx=None):
        """input (L, N, input_size*d) ((N, L, .) with batch_first, (L, input_size*d) unbatched); hx: h_0 (RNN,
        GRU) or (h_0, c_0) (LSTM), each (D*num_layers, N, hidden_size*d) ((D*num_layers, hidden_size*d)
        unbatched), zeros when None.  Returns (output, h_n) or (output, (h_n, c_n)), as torch does."""
        self._check_input(input, self.input_size, "input", (2, 3))
        lstm = self.mode == "LSTM"
        batched = input.dim() == 3
        x = input if not batched else (input.transpose(0, 1) if self.batch_first else input)
        if not batched:
            x = x.unsqueeze(1)
        L, N = x.shape[0], x.shape[1]
        if L == 0:
            raise ValueError(f"{self._who}: the input has no time steps (shape {tuple(input.shape)})")
        D = 2 if self.bidirectional else 1
        Hd = self.hidden_size * self.algebra.dim
        states = self._states(hx, (D * self.num_layers, N, Hd), 1, batched, x, ("h_0", "c_0"))
        A = self.algebra
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            outs = []
            for direction in range(D):
                idx = layer * D + direction
                w_ih, w_hh, b_ih, b_hh = self._weights(f"_l{layer}" + ("_reverse" if direction else ""))
                gi = AF.linear_impl(x.reshape(L * N, x.shape[-1]), w_ih, b_ih, A, self.method, self._who)
                gi = gi.view(L, N, gi.shape[-1])                  # explicit sizes: N may be 0
                hh = AF.linear_stepper(w_hh, b_hh, A, self.method, N, self._who)
                state = (states[0][idx], states[1][idx]) if lstm else states[0][idx]
                ys: list = [None] * L
                for t in (range(L - 1, -1, -1) if direction else range(L)):
                    state = self._step(gi[t], state, hh)
                    ys[t] = state[0] if lstm else state
                outs.append(torch.stack(ys))
                h_n.append(state[0] if lstm else state)
                if lstm:
                    c_n.append(state[1])
            x = outs[0] if D == 1 else torch.cat(outs, -1)
            if self.dropout and self.training and layer < self.num_layers - 1:
                x = F.dropout(x, self.dropout, True)
        out = x if batched else x.squeeze(1)
        if batched and self.batch_first:
            out = out.transpose(0, 1)
        h = torch.stack(h_n) if batched else torch.stack(h_n).squeeze(1)
        if lstm:
            c = torch.stack(c_n) if batched else torch.stack(c_n).squeeze(1)
            return out, (h, c)
        return out, h


class AlgebraRNN(_AlgebraRNNBase):
    """Elman RNN over an algebra, h' = act(W_ih x + b_ih + W_hh h + b_hh); see the module docstring.

    AlgebraRNN(input_size, hidden_size, algebra, num_layers=1, nonlinearity='tanh', bias=True,
    batch_first=False, dropout=0.0, bidirectional=False, method=None, device=None, dtype=None)."""

    def __init__(self, input_size: int, hidden_size: int, algebra, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 method: str | None = None, device=None, dtype=None) -> None:
        super().__init__(_rnn_mode(nonlinearity, "AlgebraRNN"), input_size, hidden_size, algebra, num_layers,
                         bias, batch_first, dropout, bidirectional, method, device, dtype)
        self.nonlinearity = nonlinearity


class AlgebraGRU(_AlgebraRNNBase):
    """GRU over an algebra (gates r, z, n); see the module docstring.  Arguments as AlgebraLSTM."""

    def __init__(self, input_size: int, hidden_size: int, algebra, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 method: str | None = None, device=None, dtype=None) -> None:
        super().__init__("GRU", input_size, hidden_size, algebra, num_layers, bias, batch_first, dropout,
                         bidirectional, method, device, dtype)


class AlgebraLSTM(_AlgebraRNNBase):
    """LSTM over an algebra (gates i, f, g, o); see the module docstring.

    AlgebraLSTM(input_size, hidden_size, algebra, num_layers=1, bias=True, batch_first=False, dropout=0.0,
    bidirectional=False, method=None, device=None, dtype=None); forward(input, (h_0, c_0)=None) ->
    (output, (h_n, c_n))."""

    def __init__(self, input_size: int, hidden_size: int, algebra, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 method: str | None = None, device=None, dtype=None) -> None:
        super().__init__("LSTM", input_size, hidden_size, algebra, num_layers, bias, batch_first, dropout,
                         bidirectional, method, device, dtype)


# -------------------------------------------------------------------------------------------- cells
class _AlgebraCellBase(_AlgebraRecurrent):
    def __init__(self, mode: str, input_size: int, hidden_size: int, algebra, bias: bool = True,
                 method: str | None = None, device=None, dtype=None) -> None:
        super().__init__()
        self._setup(mode, input_size, hidden_size, algebra, bias, method, device, dtype, type(self).__name__)
        self._flat_weights_names: list[str] = []
        self._add_weights("", input_size, {"device": device, "dtype": dtype})
        self.reset_parameters()

    def extra_repr(self) -> str:
        s = (f"{self.input_size}, {self.hidden_size}, algebra={self.algebra.name}, "
             f"method={self.method or 'default (' + AF.get_default_method() + ')'}")
        if self.mode == "RNN_RELU":
            s += ", nonlinearity='relu'"
        return s + ("" if self.bias else ", bias=False")

    def forward(self, input: torch.Tensor, hx=None):
        """input (N, input_size*d) or (input_size*d,); hx: h (RNN, GRU) or (h, c) (LSTM), each
        (N, hidden_size*d) or (hidden_size*d,), zeros when None.  Returns h' or (h', c')."""
        self._check_input(input, self.input_size, "input", (1, 2))
        lstm = self.mode == "LSTM"
        batched = input.dim() == 2
        x = input if batched else input.unsqueeze(0)
        states = self._states(hx, (x.shape[0], self.hidden_size * self.algebra.dim), 0, batched, x, ("h", "c"))
        w_ih, w_hh, b_ih, b_hh = self._weights("")
        A = self.algebra
        gi = AF.linear_impl(x, w_ih, b_ih, A, self.method, self._who)

        def hh(h: torch.Tensor) -> torch.Tensor:           # one step: a plain algebra_linear call
            return AF.linear_impl(h, w_hh, b_hh, A, self.method, self._who)

        out = self._step(gi, tuple(states) if lstm else states[0], hh)
        if batched:
            return out
        return tuple(s.squeeze(0) for s in out) if lstm else out.squeeze(0)


class AlgebraRNNCell(_AlgebraCellBase):
    """One Elman RNN step over an algebra: h' = act(W_ih x + b_ih + W_hh h + b_hh); see the module docstring.

    AlgebraRNNCell(input_size, hidden_size, algebra, bias=True, nonlinearity='tanh', method=None, ...)."""

    def __init__(self, input_size: int, hidden_size: int, algebra, bias: bool = True, nonlinearity: str = "tanh",
                 method: str | None = None, device=None, dtype=None) -> None:
        super().__init__(_rnn_mode(nonlinearity, "AlgebraRNNCell"), input_size, hidden_size, algebra, bias, method,
                         device, dtype)
        self.nonlinearity = nonlinearity


class AlgebraGRUCell(_AlgebraCellBase):
    """One GRU step over an algebra; see the module docstring."""

    def __init__(self, input_size: int, hidden_size: int, algebra, bias: bool = True, method: str | None = None,
                 device=None, dtype=None) -> None:
        super().__init__("GRU", input_size, hidden_size, algebra, bias, method, device, dtype)


class AlgebraLSTMCell(_AlgebraCellBase):
    """One LSTM step over an algebra: forward(x, (h, c)=None) -> (h', c'); see the module docstring."""

    def __init__(self, input_size: int, hidden_size: int, algebra, bias: bool = True, method: str | None = None,
                 device=None, dtype=None) -> None:
        super().__init__("LSTM", input_size, hidden_size, algebra, bias, method, device, dtype)
