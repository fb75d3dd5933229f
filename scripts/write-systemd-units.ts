import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { renderUnit, serviceRoles, unitName } from "../src/cli/systemd-unit.ts";

/**
 * Writes the shipped units in packaging/systemd/ for a corral installed with `npm install -g` (prefix
 * /usr/local) and configs in /etc/corral; `corral service install` writes the same with this machine's paths.
 */
export function shippedUnit(role: (typeof serviceRoles)[number]): string {
  return renderUnit({
    role,
    exec: ["/usr/local/bin/corral"],
    config: `/etc/corral/${role}.yaml`,
    generatedBy: "packaging (for npm install -g; `corral service install` writes one for this machine)",
  });
}

if (process.argv[1] === import.meta.filename) {
  for (const role of serviceRoles) {
    writeFileSync(join(import.meta.dirname, "../packaging/systemd", unitName(role)), shippedUnit(role));
  }
}
