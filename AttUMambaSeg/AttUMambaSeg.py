"""AttUMambaSeg: whole-body PET/CT lesion segmentation with Mamba U-Nets.

This file is the thin Slicer layer: the module description, a Widget that only wires the
UI, and the self-test. Everything that does work lives in ``Logic/`` (no Qt, testable on
slicer-core) or in the backend process (torch, models), which Slicer never imports.
"""

import importlib.util
import os
import sys

import slicer
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)

LOGIC_IMPORT_NAME = "AttUMambaSegLogic"


def loadLogicPackage():
    """Import ``Logic/`` under a private name.

    Slicer puts every scripted module's folder on ``sys.path``, so a bare ``import Logic``
    could return another extension's package. Loading ours by path under a unique name
    cannot collide.
    """
    if LOGIC_IMPORT_NAME in sys.modules:
        return sys.modules[LOGIC_IMPORT_NAME]
    package_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "Logic")
    spec = importlib.util.spec_from_file_location(
        LOGIC_IMPORT_NAME, os.path.join(package_dir, "__init__.py"), submodule_search_locations=[package_dir]
    )
    package = importlib.util.module_from_spec(spec)
    sys.modules[LOGIC_IMPORT_NAME] = package
    spec.loader.exec_module(package)
    return package


class AttUMambaSeg(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "AttUMambaSeg"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["AttUMambaSeg developers"]
        self.parent.helpText = (
            "Segments lesions in whole-body PET/CT with Mamba-based U-Nets and reports per-lesion "
            "volume, SUV statistics and RECIST axes. The models run in a separate backend process "
            "(see the README for its setup)."
        )
        self.parent.acknowledgementText = (
            "Models follow Att-UMamba, U-Mamba, LightM-UNet, Mamba-AHNet and MPU-Net; training uses nnU-Net v2."
        )


class AttUMambaSegWidget(ScriptedLoadableModuleWidget):
    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/AttUMambaSeg.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = AttUMambaSegLogic()
        self.layout.addStretch(1)


class AttUMambaSegLogic(ScriptedLoadableModuleLogic):
    """Facade over ``Logic/``: the scriptable entry point for everything the Widget does."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self.package = loadLogicPackage()


class AttUMambaSegTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_logic_package_is_ours()

    def test_logic_package_is_ours(self):
        package = AttUMambaSegLogic().package
        self.assertEqual(package.PACKAGE_ID, "AttUMambaSeg.Logic")
        self.assertTrue(package.__file__.startswith(os.path.dirname(os.path.abspath(__file__))))
