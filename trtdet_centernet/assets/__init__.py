"""Files shipped with the CenterNet plugin: the trained default model and its sample scene."""
