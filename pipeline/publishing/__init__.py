"""Stage 4, publish: verified builds become immutable versions of a Triton model repository.

    publish.py   main(PublishConfig): checks, stages and commits a version; no-op if unchanged
    versions.py  which version a build is: those published, the build each holds, reuse or new
    deploy.py    --deploy: the verified precision variants that become extra Triton models
    triton.py    config.pbtxt per backend, from the spec
    card.py      the model card README.md of each version
    release.py   release tarballs and their safe extraction
    signing.py   keygen, sign_version, verify_version (model-signing bundles, model.sig)
    trust.py     what consumers call: verify_registry, verify_release, open_published
"""
