#!/bin/sh
# Export a commit (default HEAD) of this repository into a directory, so the benchmark runs a
# fixed version of the daemon while others edit the working tree:
#   sh bench/snapshot.sh /tmp/hismon-snap [COMMIT]
#   python bench/run.py --repo /tmp/hismon-snap --checks 2000 --interval 10s
set -eu
dest=${1:?usage: snapshot.sh DIR [COMMIT]}
commit=${2:-HEAD}
root=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
rm -rf "$dest"
mkdir -p "$dest"
git -C "$root" archive "$commit" | tar -x -C "$dest"
git -C "$root" rev-parse --short "$commit" > "$dest/.bench-commit"
echo "$dest: $(cat "$dest/.bench-commit")"
