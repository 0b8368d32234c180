"""Settings shared by the tables that show model output or imported text."""

# No copy button: model text pasted into a spreadsheet could run as a formula (CSV injection), and
# critlab neutralises nothing on the clipboard. Fullscreen stays.
NO_COPY: list = ["fullscreen"]
