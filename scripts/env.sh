#!/usr/bin/env bash
# Prints (and, when sourced, sets) the environment that gst-launch-1.0 needs to find `hcmlaction`.
#   eval "$(bash scripts/env.sh)"   or   source scripts/env.sh
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
site="$("$root/.venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' 2>/dev/null)"
registry="${HCML_GST_REGISTRY:-$root/.venv/gst-registry.bin}"
export GST_PLUGIN_PATH="$root/plugin${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}"
export PYTHONPATH="$site:$root${PYTHONPATH:+:$PYTHONPATH}"
export GST_REGISTRY="$registry"
export PATH="$root/.venv/bin:$PATH"
echo "export GST_PLUGIN_PATH=\"$GST_PLUGIN_PATH\""
echo "export PYTHONPATH=\"$PYTHONPATH\""
echo "export GST_REGISTRY=\"$GST_REGISTRY\""
echo "export PATH=\"$root/.venv/bin:\$PATH\""
