"""What ``nnUNet_extTrainer`` points nnU-Net at: it imports this folder's modules by file name
and takes a trainer as the attribute of that name.

Every trainer recipe of ``attumamba.training.trainers`` is re-exported from that module's own
list, so this file cannot name a trainer that no longer exists (one renamed trainer listed here
by hand made the import fail, and with it every nnU-Net lookup through this folder).

nnU-Net's lookup imports all of nnU-Net's own trainer modules before this folder; its Primus
trainers import ``timm``, which this project installs without (see Backend/pyproject.toml), so
stock ``nnUNetv2_train``/``nnUNetv2_predict`` need ``timm`` installed; ``attumamba-seg train`` does not.
"""

from attumamba.training.trainers import nnunet_trainers

globals().update(nnunet_trainers())
__all__ = sorted(nnunet_trainers())
