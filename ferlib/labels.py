"""Canonical expression labels shared by every dataset and paper."""

EXPRESSIONS = ("neutral", "anger", "contempt", "disgust", "fear", "happiness", "sadness", "surprise")
BASIC6 = ("anger", "disgust", "fear", "happiness", "sadness", "surprise")
BASIC7 = ("neutral",) + BASIC6  # RAF-DB basic, Oulu + neutral
CKPLUS7 = ("anger", "contempt", "disgust", "fear", "happiness", "sadness", "surprise")
FERPLUS8 = EXPRESSIONS

SHORT = {  # three-letter names for tight plot axes
    "neutral": "NE", "anger": "AN", "contempt": "CO", "disgust": "DI",
    "fear": "FE", "happiness": "HA", "sadness": "SA", "surprise": "SU",
}
