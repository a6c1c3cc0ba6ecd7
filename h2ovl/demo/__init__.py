"""The README's main command: what h2ovl shows on the embedded defaults, with nothing downloaded."""
