"""Constants shared by the data and model sides, in a module that imports nothing, so data-loader
workers can use them without loading torch's model stacks (transformers, timm)."""

#: Label of the positions the loss ignores (PyTorch's cross-entropy default).
IGNORE_INDEX = -100

IMG_START, IMG_END, IMG_CONTEXT = "<img>", "</img>", "<IMG_CONTEXT>"
PROMPT, ANSWER, END = "<|prompt|>", "<|answer|>", "<|end|>"
#: The tokens H2OVL adds to the Danube vocabulary (ids 32000..32009 in the released tokenizers, where the
#: prompt and answer markers are plain text).
ADDED_TOKENS = (IMG_START, IMG_END, IMG_CONTEXT, "<quad>", "</quad>", "<ref>", "</ref>", "<box>", "</box>", END)

#: Environment variable naming the sweep process to the trials it starts (a trial whose sweep is gone stops).
SWEEP_PID_ENV = "H2OVL_SWEEP_PID"

#: The subcommands LightningCLI runs (`h2ovl fit|validate|test|predict`); the others are plain commands.
LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")
