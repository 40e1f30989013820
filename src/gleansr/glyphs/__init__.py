"""The text-glyph data set the bundled model is trained on: fonts found on the machine
(:mod:`.fonts`), held-out font designs (:mod:`.split`) and rendering the sets (:mod:`.render`)."""
