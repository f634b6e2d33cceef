"""Stage 4, publish: verified builds become immutable versions of a Triton model repository.

    publish.py   main(PublishConfig): checks, stages and commits a version; no-op if unchanged
    triton.py    config.pbtxt per backend, from the spec
    card.py      the model card README.md of each version
    release.py   release tarballs and their safe extraction
"""
