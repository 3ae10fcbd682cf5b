"""What ``nnUNet_extTrainer`` points nnU-Net at: it imports this folder's modules by file name.

The classes live in ``attumamba.training.trainers``; re-exporting them here keeps one copy.
"""

from attumamba.training.trainers import (  # noqa: F401
    nnUNetTrainerAttUMamba,
    nnUNetTrainerAttUMambaCPU,
    nnUNetTrainerAttUMambaCPULesionAnywhere,
    nnUNetTrainerLightMUNet,
    nnUNetTrainerMambaAHNet,
    nnUNetTrainerMPUNet,
    nnUNetTrainerUMamba,
    nnUNetTrainerUMambaNoAMP,
)
