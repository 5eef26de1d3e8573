# Shared by scripts/demo and scripts/test: Debian packages where missing, then a virtualenv with this package.
# Usage: . scripts/_setup.sh "<debian packages>"; then make_venv DIR PYTHON "<pip extras>"
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

# make_venv DIR PYTHON EXTRAS: a virtualenv in DIR made with PYTHON, holding this package (editable).
make_venv() {
    local dir="$1" py="$2" extras="$3"
    if [ ! -x "$dir/bin/python" ]; then
        "$py" -m venv "$dir" 2>/dev/null || {
            echo "$py -m venv failed: installing python3-venv" >&2
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
            "$py" -m venv "$dir"
        }
    fi
    # Wheels as NethServer 7 (glibc 2.17) gets them: pip asks a `_manylinux` module (PEP 600) whether a
    # manylinux_2_X wheel may be installed, and this one says no above 2.17, so tests/test_glibc.py checks
    # the wheel set that host installs. A venv made before the hook has its wheels taken again, once.
    local hook reinstall=()
    hook="$("$dir/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/_manylinux.py"
    if [ ! -f "$hook" ]; then
        printf 'def manylinux_compatible(major, minor, arch):\n    return (major, minor) <= (2, 17)\n' >"$hook"
        reinstall=(--force-reinstall)
    fi
    # Binary wheels only, as on NethServer 7 where nothing may be compiled (issue 12); pip's own warnings
    # about package mirrors this machine's configuration names but lacks are filtered out.
    "$dir/bin/python" -m pip install -q --disable-pip-version-check --prefer-binary ${reinstall[@]+"${reinstall[@]}"} \
        -e ".$extras" 2> >(grep -v "is ignored: it is neither" >&2)
}

# find_python X.Y: an interpreter of that version (on PATH, or under pyenv), or nothing.
find_python() {
    local v="$1" p
    for p in "python$v" "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$v".*/bin/python"$v" /opt/rh/rh-python${v/./}/root/usr/bin/python"$v"; do
        if command -v "$p" >/dev/null 2>&1 && "$p" -c "import sys; sys.exit(sys.version_info[:2] != tuple(map(int, '$v'.split('.'))))" 2>/dev/null; then
            command -v "$p"
            return 0
        fi
    done
    return 1
}
