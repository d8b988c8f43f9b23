"""Operations around the pipeline, each behind an `hnpipe` command; nothing here builds data.

    admin.py     `hnpipe admin`: per-pull-request clones of PRODUCTION, the production handover
    changes.py   `hnpipe changes`: which datasets a change touches, and why
    diff.py      `hnpipe diff`: data diff of two databases, inside the warehouse
    catalog.py   `hnpipe docs`: the HTML data catalog
    handover.py  `hnpipe sql` and the production lockdown statements for IT
    versions.py  `hnpipe versions` and `hnpipe restore`: kept table versions, and putting one back
"""
