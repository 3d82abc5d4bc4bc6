// Which official SDK a test runs: both pinned versions are installed side by side (package.json aliases the
// 3.x one as `conversations3`), and the tests run every scenario once per version.

import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** SDK version → npm package name in node_modules. */
export const SDK_PACKAGES = {
  '2.6.0': '@twilio/conversations',
  '3.0.1': 'conversations3',
};

/**
 * The versions this run covers: `PALAVER_SDK_VERSION` (one version, or several separated by commas), else all.
 */
export const SDK_VERSIONS = (() => {
  const chosen = (process.env.PALAVER_SDK_VERSION || '')
    .split(',')
    .map((v) => v.trim())
    .filter(Boolean);
  for (const version of chosen) {
    if (!SDK_PACKAGES[version]) {
      throw new Error(`PALAVER_SDK_VERSION=${version}: known versions are ${Object.keys(SDK_PACKAGES).join(', ')}`);
    }
  }
  return chosen.length ? chosen : Object.keys(SDK_PACKAGES);
})();

/** The installed version of the package behind `version` (to check the alias resolves to what it claims). */
export function installedVersion(version) {
  return require(`${SDK_PACKAGES[version]}/package.json`).version;
}

/** The SDK module for `version`: `{ Client, Conversation, Message, … }`. */
export async function loadSdk(version) {
  const name = SDK_PACKAGES[version];
  if (!name) throw new Error(`unknown SDK version ${version}`);
  const module = await import(name);
  // The package is CommonJS: Node exposes its exports both as named exports and as `default`.
  return module.Client ? module : module.default;
}
