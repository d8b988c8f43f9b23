# JupyterLab for this project (README: `jupyter lab --config=jupyter_server_config.py`, from
# the project root, so notebooks/ and runs/ are both in the file browser).
# A save under notebooks/ writes what git keeps (outputs stripped: `git status` stays clean);
# a save over a kept run record (runs/<env>/<run id>/) is refused, saying how to rerun.
c = get_config()  # noqa: F821 - provided by Jupyter when it loads this file
c.ContentsManager.pre_save_hook = "hnpipe.runner.records.refuse_save"
