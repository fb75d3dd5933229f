import { clone, type DescFile, type DescService, toBinary } from "@bufbuild/protobuf";
import { protoCamelCase } from "@bufbuild/protobuf/reflect";
import {
  type DescriptorProto,
  type EnumDescriptorProto,
  type FieldDescriptorProto,
  type FileDescriptorProto,
  FileDescriptorProtoSchema,
} from "@bufbuild/protobuf/wkt";

/**
 * What server reflection answers from: the files of the mounted services and everything they import,
 * serialized once, plus an index from every fully qualified symbol to the file declaring it.
 *
 * The serialized descriptors are the ones protobuf-es embeds in generated code, which it strips for
 * size (no source info, no `dependency` list, no json_name equal to the default) and restores when the
 * code loads. They must come out as protoc/buf would write them — other toolchains (grpcurl, Python's
 * and Go's descriptor pools) reject a file whose imports are not listed. `servedFileDescriptor`
 * re-derives anything that may be missing; the reflection test compares every served file with
 * `buf build`'s, field for field.
 */
export class DescriptorIndex {
  readonly #files = new Map<string, DescFile>();
  readonly #bytes = new Map<string, Uint8Array>();
  /** Fully qualified name (no leading dot) → the file declaring it. */
  readonly #symbols = new Map<string, DescFile>();
  /** Every message type, map entries included. */
  readonly #messages = new Set<string>();
  /** `containing.Type` → extension field number → the file declaring the extension. */
  readonly #extensions = new Map<string, Map<number, DescFile>>();
  readonly services: readonly string[];

  constructor(services: readonly DescService[]) {
    const names: string[] = [];
    for (const service of services) {
      if (!names.includes(service.typeName)) names.push(service.typeName);
      this.#addFile(service.file);
    }
    this.services = names;
  }

  /** The names of every file the index holds (the services' files and all their imports). */
  get fileNames(): readonly string[] {
    return [...this.#files.keys()];
  }

  /** The serialized file and all its transitive dependencies, each once, the file itself first. */
  fileByName(name: string): Uint8Array[] | undefined {
    const file = this.#files.get(name);
    return file === undefined ? undefined : this.#withDependencies(file);
  }

  /** Services, methods, messages, enums, enum values, fields, oneofs and extensions, nested or not. */
  fileContainingSymbol(symbol: string): Uint8Array[] | undefined {
    const file = this.#symbols.get(symbol.startsWith(".") ? symbol.slice(1) : symbol);
    return file === undefined ? undefined : this.#withDependencies(file);
  }

  fileContainingExtension(containingType: string, fieldNumber: number): Uint8Array[] | undefined {
    const file = this.#extensions.get(containingType)?.get(fieldNumber);
    return file === undefined ? undefined : this.#withDependencies(file);
  }

  /** The extension numbers of a known message type (none in corral's APIs); undefined if unknown. */
  extensionNumbersOf(typeName: string): number[] | undefined {
    if (!this.#messages.has(typeName)) return undefined;
    return [...(this.#extensions.get(typeName)?.keys() ?? [])].sort((a, b) => a - b);
  }

  #withDependencies(root: DescFile): Uint8Array[] {
    const out: Uint8Array[] = [];
    const seen = new Set<string>();
    const pending: DescFile[] = [root];
    // Bounded: every file is pushed at most once per edge and emitted at most once.
    for (let file = pending.shift(); file !== undefined; file = pending.shift()) {
      const name = file.proto.name;
      if (seen.has(name)) continue;
      seen.add(name);
      out.push(this.#serialized(name));
      pending.push(...file.dependencies);
    }
    return out;
  }

  #serialized(name: string): Uint8Array {
    let bytes = this.#bytes.get(name);
    if (bytes === undefined) {
      const file = this.#files.get(name);
      if (file === undefined) throw new Error(`descriptor index: no file ${name}`);
      bytes = toBinary(FileDescriptorProtoSchema, servedFileDescriptor(file));
      this.#bytes.set(name, bytes);
    }
    return bytes;
  }

  #addFile(file: DescFile): void {
    const name = file.proto.name;
    if (this.#files.has(name)) return;
    this.#files.set(name, file);
    for (const dependency of file.dependencies) this.#addFile(dependency);
    // Walks the descriptor rather than protobuf-es's DescFile: only the descriptor has the synthetic
    // map entry messages (`GetNodesRequest.MetadataFiltersEntry`), which grpcurl and protoc resolve.
    const proto = file.proto;
    const scope = proto.package;
    for (const service of proto.service) {
      const serviceName = qualify(scope, service.name);
      this.#symbol(serviceName, file);
      for (const method of service.method) this.#symbol(`${serviceName}.${method.name}`, file);
    }
    for (const enumeration of proto.enumType) this.#addEnum(scope, enumeration, file);
    for (const message of proto.messageType) this.#addMessage(scope, message, file);
    for (const extension of proto.extension) this.#addExtension(scope, extension, file);
  }

  #addMessage(scope: string, message: DescriptorProto, file: DescFile): void {
    const name = qualify(scope, message.name);
    this.#symbol(name, file);
    this.#messages.add(name);
    for (const field of message.field) this.#symbol(`${name}.${field.name}`, file);
    for (const oneof of message.oneofDecl) this.#symbol(`${name}.${oneof.name}`, file);
    for (const enumeration of message.enumType) this.#addEnum(name, enumeration, file);
    for (const nested of message.nestedType) this.#addMessage(name, nested, file);
    for (const extension of message.extension) this.#addExtension(name, extension, file);
  }

  #addEnum(scope: string, enumeration: EnumDescriptorProto, file: DescFile): void {
    this.#symbol(qualify(scope, enumeration.name), file);
    // Enum values are siblings of their enum in protobuf's scoping.
    for (const value of enumeration.value) this.#symbol(qualify(scope, value.name), file);
  }

  #addExtension(scope: string, extension: FieldDescriptorProto, file: DescFile): void {
    this.#symbol(qualify(scope, extension.name), file);
    const extendee = extension.extendee.startsWith(".") ? extension.extendee.slice(1) : extension.extendee;
    let byNumber = this.#extensions.get(extendee);
    if (byNumber === undefined) {
      byNumber = new Map();
      this.#extensions.set(extendee, byNumber);
    }
    if (!byNumber.has(extension.number)) byNumber.set(extension.number, file);
  }

  #symbol(name: string, file: DescFile): void {
    if (!this.#symbols.has(name)) this.#symbols.set(name, file);
  }
}

/**
 * The FileDescriptorProto to serve for a file: protobuf-es's, with what its embedding strips put back
 * if the loaded descriptor lacks it — the import list (from the file's resolved dependencies) and each
 * field's json_name (protoc always writes it). Source info is left out, as in generated code; clients
 * do not need it. The DescFile's own proto is never modified.
 */
export function servedFileDescriptor(file: DescFile): FileDescriptorProto {
  const proto = file.proto;
  const imports = file.dependencies.map((d) => d.proto.name);
  const importsMissing = imports.some((name) => !proto.dependency.includes(name));
  const jsonNamesMissing = proto.messageType.some(lacksJsonName);
  if (!importsMissing && !jsonNamesMissing && proto.sourceCodeInfo === undefined) return proto;
  const repaired = clone(FileDescriptorProtoSchema, proto);
  repaired.sourceCodeInfo = undefined;
  if (importsMissing) {
    for (const name of imports) if (!repaired.dependency.includes(name)) repaired.dependency.push(name);
  }
  if (jsonNamesMissing) repaired.messageType.forEach(restoreJsonNames);
  return repaired;
}

function lacksJsonName(message: DescriptorProto): boolean {
  return message.field.some((f) => f.jsonName === "") || message.nestedType.some(lacksJsonName);
}

function restoreJsonNames(message: DescriptorProto): void {
  for (const field of message.field) if (field.jsonName === "") field.jsonName = protoCamelCase(field.name);
  message.nestedType.forEach(restoreJsonNames);
}

function qualify(scope: string, name: string): string {
  return scope === "" ? name : `${scope}.${name}`;
}
