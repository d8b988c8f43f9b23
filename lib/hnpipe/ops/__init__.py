"""Operations around the pipeline, each behind an `hnpipe` command; nothing here builds data.

One module per command family; the module map is docs/development.md.
"""
