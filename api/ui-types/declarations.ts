// TypeScript declarations of JSON schemas, for what the API's schemas use:
// objects, records (an object of one `patternProperties` schema), arrays,
// strings, numbers, integers, booleans, null, literals (const), enums, unions
// (anyOf) and optional properties (left out of `required`). Another schema to declare is referred to by its name when it
// is the same object (TypeBox keeps the objects a schema is built of).
import type { TSchema } from 'typebox';

/** The JSON Schema keywords read here. */
interface JsonSchema {
  type?: string;
  const?: unknown;
  enum?: unknown[];
  anyOf?: JsonSchema[];
  items?: JsonSchema;
  properties?: Record<string, JsonSchema>;
  patternProperties?: Record<string, JsonSchema>;
  required?: string[];
  description?: string;
}

interface ObjectSchema extends JsonSchema {
  properties: Record<string, JsonSchema>;
}

export interface Declarations {
  /** Type names and their schemas: an interface for an object, a type alias otherwise. */
  types: Record<string, TSchema>;
  /** Constant names and enum schemas: a readonly array of the enum's values. */
  values: Record<string, TSchema>;
}

const PRIMITIVES = new Map([['string', 'string'], ['number', 'number'], ['integer', 'number'], ['boolean', 'boolean'], ['null', 'null']]);

const isObject = (schema: JsonSchema): schema is ObjectSchema => schema.type === 'object' && schema.properties !== undefined;
const literal = (value: unknown): string => (typeof value === 'string' ? `'${value.replace(/[\\']/g, '\\$&')}'` : JSON.stringify(value));
const propertyName = (name: string): string => (/^[A-Za-z_$][\w$]*$/.test(name) ? name : literal(name));
const docComment = (description: string | undefined, indent: string): string[] =>
  description === undefined ? [] : [`${indent}/** ${description.replaceAll('*/', '*\\/')} */`];

/** The declarations as the text of a module, after `header` (a comment). */
export function typescriptDeclarations(header: string, { types, values }: Declarations): string {
  const names = new Map<unknown, string>(Object.entries(types).map(([name, schema]) => [schema, name]));

  const reference = (schema: JsonSchema, indent: string): string => names.get(schema) ?? expression(schema, indent);

  const objectType = (schema: ObjectSchema, indent: string): string => {
    const inner = `${indent}  `;
    const required = new Set(schema.required);
    const members = Object.entries(schema.properties).flatMap(([name, property]) => [
      ...docComment(names.has(property) ? undefined : property.description, inner),
      `${inner}${propertyName(name)}${required.has(name) ? '' : '?'}: ${reference(property, inner)};`,
    ]);
    return `{\n${members.join('\n')}\n${indent}}`;
  };

  const arrayType = (items: JsonSchema, indent: string): string => {
    const element = reference(items, indent);
    return !names.has(items) && (items.anyOf || items.enum) ? `(${element})[]` : `${element}[]`;
  };

  function expression(schema: JsonSchema, indent: string): string {
    if ('const' in schema) return literal(schema.const);
    if (schema.enum) return schema.enum.map(literal).join(' | ');
    if (schema.anyOf) return schema.anyOf.map((member) => reference(member, indent)).join(' | ');
    if (isObject(schema)) return objectType(schema, indent);
    const patterns = schema.type === 'object' ? Object.values(schema.patternProperties ?? {}) : [];
    if (patterns.length === 1) return `Record<string, ${reference(patterns[0], indent)}>`;
    if (schema.type === 'array' && schema.items) return arrayType(schema.items, indent);
    const primitive = PRIMITIVES.get(schema.type ?? '');
    if (primitive === undefined) throw new Error(`no TypeScript type for the JSON schema ${JSON.stringify(schema)}`);
    return primitive;
  }

  const typeDeclarations = Object.entries(types).map(([name, typeSchema]) => {
    const schema: JsonSchema = typeSchema;
    const declaration = isObject(schema) ? `export interface ${name} ${objectType(schema, '')}` : `export type ${name} = ${expression(schema, '')};`;
    return [...docComment(schema.description, ''), declaration].join('\n');
  });
  const valueDeclarations = Object.entries(values).map(([name, valueSchema]) => {
    const { enum: enumValues }: JsonSchema = valueSchema;
    if (!enumValues) throw new Error(`${name}: not an enum: ${JSON.stringify(valueSchema)}`);
    return `export const ${name} = [${enumValues.map(literal).join(', ')}] as const;`;
  });
  return `${[header, ...typeDeclarations, ...valueDeclarations].join('\n\n')}\n`;
}
