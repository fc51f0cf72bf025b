#!/usr/bin/env bash
# Coverage tests need a JDK (javac --release 11), Debian's JaCoCo 0.8.6 (agent, core, report, Ant
# tasks) and Ant, which renders reports through `jacoco:report`. Idempotent: installs only what is
# missing, and refreshes the package index at most once.
set -euo pipefail

need=()
command -v javac >/dev/null 2>&1 || need+=(default-jdk-headless)
command -v ant >/dev/null 2>&1 || need+=(ant)
for jar in org.jacoco.agent.jar org.jacoco.ant.jar org.jacoco.core.jar org.jacoco.report.jar; do
  if [ ! -e "/usr/share/java/$jar" ]; then
    need+=(libjacoco-java)
    break
  fi
done
# JaCoCo's report engine needs ASM (a dependency of libjacoco-java; checked in case it was removed).
for jar in asm.jar asm-commons.jar asm-tree.jar; do
  if [ ! -e "/usr/share/java/$jar" ]; then
    need+=(libasm-java)
    break
  fi
done

if [ "${#need[@]}" -eq 0 ]; then
  echo "coverage prerequisites present (javac, ant, libjacoco-java, libasm-java)"
  exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  sudo=(sudo)
fi
echo "installing: ${need[*]}"
"${sudo[@]}" apt-get update
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y --no-install-recommends "${need[@]}"
