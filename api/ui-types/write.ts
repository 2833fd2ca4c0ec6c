// Writes the UI's types of the API (api/ui-types/ui-types.ts): run before every UI build.
import { writeFileSync } from 'node:fs';
import { UI_TYPES_FILE, uiTypesSource } from './ui-types.js';

writeFileSync(UI_TYPES_FILE, uiTypesSource());
