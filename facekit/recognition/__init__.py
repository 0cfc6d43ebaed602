"""Face recognition: backbones, margin heads and metric losses, Partial FC, training, verification, export."""
