/**
 * AWS SDK clients. Local servers are reached purely through endpoint configuration
 * (FEDKMS_S3_ENDPOINT / FEDKMS_DYNAMODB_ENDPOINT); there is no "offline" code path.
 */
import { S3Client } from '@aws-sdk/client-s3';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { currentDeadline } from '../deadline.js';

export interface EndpointConfig {
  AWS_REGION: string;
  FEDKMS_S3_ENDPOINT?: string | undefined;
  FEDKMS_DYNAMODB_ENDPOINT?: string | undefined;
}

// Clients are cached per endpoint+region: reuse keeps connections warm across invocations.
const cache = new Map<string, unknown>();
function memo<T>(key: string, make: () => T): T {
  if (!cache.has(key)) cache.set(key, make());
  return cache.get(key) as T;
}

/**
 * Every storage call made while serving a request stops at that request's deadline: no
 * work goes on for a caller who has gone (an abandoned audit write fails, so nothing is released).
 */
function boundedByDeadline<C extends { send: (...args: any[]) => Promise<any> }>(client: C): C {
  const send = client.send.bind(client) as (command: unknown, options?: Record<string, unknown>) => Promise<unknown>;
  (client as { send: unknown }).send = (command: unknown, options?: Record<string, unknown>) => {
    const deadline = currentDeadline();
    return send(command, deadline && !options?.['abortSignal'] ? { ...options, abortSignal: deadline.signal() } : options);
  };
  return client;
}

export const s3Client = (c: EndpointConfig): S3Client =>
  memo(`s3|${c.AWS_REGION}|${c.FEDKMS_S3_ENDPOINT ?? ''}`, () =>
    boundedByDeadline(new S3Client({
      region: c.AWS_REGION,
      ...(c.FEDKMS_S3_ENDPOINT ? { endpoint: c.FEDKMS_S3_ENDPOINT, forcePathStyle: true } : {}),
      // Checksums only when S3 requires them: s3rver stores aws-chunked framing otherwise.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      maxAttempts: 2,
    })),
  );

export const dynamoClient = (c: EndpointConfig): DynamoDBDocumentClient =>
  memo(`ddb|${c.AWS_REGION}|${c.FEDKMS_DYNAMODB_ENDPOINT ?? ''}`, () =>
    boundedByDeadline(DynamoDBDocumentClient.from(
      new DynamoDBClient({
        region: c.AWS_REGION,
        ...(c.FEDKMS_DYNAMODB_ENDPOINT ? { endpoint: c.FEDKMS_DYNAMODB_ENDPOINT } : {}),
        maxAttempts: 2,
      }),
      { marshallOptions: { removeUndefinedValues: true } },
    )),
  );
