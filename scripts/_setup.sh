# Shared by scripts/demo and scripts/test: Debian packages where missing, then a virtualenv in .venv.
# Usage: . scripts/_setup.sh "<debian packages>" "<pip extras>"
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
for pkg in $1; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_pkgs+=("$pkg")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
    echo "installing Debian packages: ${need_pkgs[*]}" >&2
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv 2>/dev/null || {
        echo "python3 -m venv failed: installing python3-venv" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        "$PY" -m venv .venv
    }
fi
# (Filter pip's warnings about package mirrors this machine's configuration names but lacks.)
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".$2" 2> >(grep -v "is ignored: it is neither" >&2)
