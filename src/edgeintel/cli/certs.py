"""Command group ``certs``: a deployment's certificates in the forms people use them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgeintel.cli.common import console, guard
from edgeintel.errors import ConfigError

__all__ = ["certs_app", "export_operator_cmd"]

certs_app = typer.Typer(help="A deployment's certificates (browser bundles).", no_args_is_help=True)


@certs_app.command("export-operator")
def export_operator_cmd(
    run: Annotated[
        Path, typer.Argument(help="Run folder (or its runtime/pki folder) with the operator's.")
    ],
    p12: Annotated[
        Path, typer.Option("--p12", help="PKCS#12 file to write (the browser imports it).")
    ],
    password_file: Annotated[
        Path | None,
        typer.Option(
            help="File whose first line is the bundle's password (default: a new random "
            "one, written to <p12>.password, mode 0600)."
        ),
    ] = None,
) -> None:
    """Write the operator's certificate, key and CA as a password-protected PKCS#12 bundle,
    so a browser reaches the dashboard over mutual TLS (docs/runtime.md)."""
    with guard():
        from edgeintel.security.bundle import export_pkcs12, new_password, operator_files

        files = operator_files(run)
        pw_out = p12.with_name(p12.name + ".password")
        for path in (p12, pw_out) if password_file is None else (p12,):
            if path.exists():
                raise ConfigError(f"--p12 {path}: exists; choose another path or delete it")
        if password_file is not None:
            if not password_file.is_file():
                raise ConfigError(f"--password-file {password_file}: file not found")
            lines = password_file.read_text().splitlines()
            password = lines[0] if lines else ""
        else:
            password = new_password()
        export_pkcs12(files, p12, password)
        if password_file is None:
            pw_out.touch(mode=0o600)
            pw_out.write_text(password + "\n")
        console.print(f"wrote {p12} (operator certificate, key and CA; mode 0600)")
        if password_file is None:
            console.print(f"its password is in {pw_out} (mode 0600)")
        console.print(
            f"browser: import {p12} as your certificate and {files.ca} as an authority "
            "trusted for websites, then open https://<node>/dashboard"
        )
