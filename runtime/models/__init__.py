"""Model builders over any algebra: ResNet, decoder-only Transformer LM, ViT, width matching, conversion."""
from .convert import convert
from .resnet import AlgebraResNet, BasicBlock, Bottleneck, resnet, resnet18, resnet50
from .transformer import AlgebraMLP, AlgebraSelfAttention, KVCache, TransformerBlock, TransformerLM
from .vit import AlgebraViT, ViTEncoderBlock, vit
from .width import macs_per_pair, match_model, match_width, matched_width, matched_widths

__all__ = ["convert", "AlgebraResNet", "BasicBlock", "Bottleneck", "resnet", "resnet18", "resnet50",
           "AlgebraMLP", "AlgebraSelfAttention", "KVCache", "TransformerBlock", "TransformerLM", "macs_per_pair",
           "match_model", "match_width", "matched_width", "matched_widths", "AlgebraViT", "ViTEncoderBlock", "vit"]
