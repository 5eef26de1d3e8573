"""importer: turn an SME Server / NethService full backup into a NethServer.

Steps 1-5 of the migration procedure (see DESIGN.md section 5): explode the
backup archive safely (:mod:`importer.archive`), inspect what will migrate
(:mod:`importer.inspect`), run the ``migration-import`` event
(:mod:`importer.events`) and report every failure (:mod:`importer.report`).
The command line is :mod:`importer.cli` (console script ``maildirsync-import``).
"""

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
